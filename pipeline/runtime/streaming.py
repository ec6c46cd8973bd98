"""Streaming keyword detection: one engine for files, pipes and microphones, on any runtime (numpy only).

**Windows.** The model classifies 1 s windows (98 frames of 10 ms at the defaults); window ``i`` of a stream
covers samples ``[i * S, i * S + W)``, where the stride ``S`` is a whole number of feature hops, so every window
is a run of consecutive front-end frames (:class:`~pipeline.runtime.decision.Windowing`). :class:`Detector` computes
each frame once (:class:`FeatureStream`), keeps the frames that later windows still need, and sends every
window a pushed chunk completes to the model in batches of at most ``max_batch``. State is bounded by one
window plus the chunk being processed: memory does not grow with the stream. The words come from the decision
rule of :mod:`pipeline.runtime.decision`.

**End of stream.** :meth:`Detector.flush` pads with zeros up to the end of the next window (a stream shorter
than one window becomes exactly one zero-padded window), then ``K - 1`` strides more so that the moving
average of the last real window is complete, and emits any pending word.

**Resampling.** Audio at another rate goes through :class:`~pipeline.runtime.audio.StreamResampler`, which gives the
same samples whatever the chunking (only the length of the last block may differ by one sample).

**Models.** Anything with the :class:`Classifier` interface: the PyTorch model of a checkpoint
(:class:`~pipeline.train.model.KWSModel`) or an exported ONNX model
(:class:`~pipeline.runtime.onnx_model.OnnxModel`), which runs without PyTorch.

**Streaming models** (``streaming``) run step by step instead: each new run of frames goes once through the
model, which keeps what it still needs of the past as a state, and gives one output every ``step_frames``
frames. A causal MatchboxNet (``model.causal``; :mod:`pipeline.train.models.causal`) gives each frame's logits,
and a window's logits are the mean of its frames'; the speech-embedding model's ring
(:class:`~pipeline.train.models.speech_embedding.EmbeddingRing`) gives every 80 ms the logits of one window, from
embeddings each computed once (its first ``lead_outputs`` outputs are of windows before the stream, and its
windows hear 0.24 s of the stream on either side). A window then costs a mean or nothing, not a model run, so
such a model decides every step by default. The reference is the model's run over the whole signal's frames
from its initial state, which the stream equals for any chunking. Within a stream a window's model sees the
audio around it, where training clips had silence.
"""

from __future__ import annotations

from typing import Protocol, TypeGuard

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.errors import KWSError
from pipeline.runtime.audio import SAMPLE_RATE, StreamResampler, frame_count, resample, to_mono
from pipeline.runtime.decision import (
    OPERATING_POINT,
    PATIENCE,
    SMOOTH_MS,
    STRIDE_MS,
    SUPPRESSION_MS,
    THRESHOLD,
    Decider,
    Detection,
    Settings,
    Windowing,
    decide,
)

MAX_BATCH = 32  # windows per model call: on one CPU thread the cost per window is lowest near 32
STREAM_STRIDE_MS = 10.0  # decision step of a causal streaming model: one feature hop
STEP_CHUNK_FRAMES = 8192  # most frames per step call of the offline reference (bounded memory on long audio)


class Classifier(Protocol):
    """What the engine needs of a model: its labels, its front end's geometry, features and logits; and the
    operating point it carries (``decision``: some of ``OPERATING_POINT``'s keys, or empty)."""

    labels: list[str]
    decision: dict[str, float]
    sample_rate: int  # Hz
    win_length: int  # samples per feature frame
    hop_length: int  # samples between frames
    n_features: int  # feature rows per frame

    def features(self, audio: np.ndarray) -> np.ndarray:
        """``(..., samples)`` float32 audio -> ``(..., n_features, frames)`` features of its complete frames."""
        ...

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """``(batch, n_features, frames)`` feature windows -> ``(batch, n_classes)`` logits."""
        ...


class StreamingClassifier(Classifier, Protocol):
    """A streaming model (``streaming`` true): it also runs step by step, carrying a state."""

    streaming: bool
    step_frames: int  # frames per output of frame_logits (new frames come in whole steps)
    window_outputs: int  # consecutive outputs whose mean is a window's logits
    lead_outputs: int  # outputs at the start of a stream that belong to windows before it

    def initial_state(self) -> np.ndarray:
        """The state before a stream's first frame."""
        ...

    def frame_logits(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n_features, T)`` new frames (whole steps) and the state -> ``(n_classes, T // step_frames)``
        outputs and the next state."""
        ...


def is_streaming(model: Classifier) -> TypeGuard[StreamingClassifier]:
    """Whether ``model`` runs step by step (a causal model, the embedding's ring) rather than window by window."""
    return bool(getattr(model, "streaming", False))


def step_ms(model: Classifier) -> float:
    """The step of a streaming model's outputs in milliseconds (a window model's: one feature hop)."""
    steps = model.step_frames if is_streaming(model) else 1
    return 1000 * steps * model.hop_length / model.sample_rate


def default_stride_ms(model: Classifier) -> float:
    """The engine's default decision step for ``model``: one step of a streaming one (:func:`step_ms`), else
    ``STRIDE_MS``."""
    return step_ms(model) if is_streaming(model) else STRIDE_MS


def operating_point(model: Classifier) -> dict[str, float]:
    """The decision settings ``model`` carries (chosen by ``kws evaluate-stream --tune``), or none."""
    point = getattr(model, "decision", None) or {}
    return {key: point[key] for key in OPERATING_POINT if point.get(key) is not None}


def settings_for(
    model: Classifier, threshold: float | None = None, stride_ms: float | None = None, smooth_ms: float | None = None,
    suppression_ms: float | None = None, hold_ms: float | None = None, patience: int | None = None,
) -> Settings:  # fmt: skip
    """The decision rule's settings for ``model``: each one given wins, then the model's own operating point
    (:func:`operating_point`), then the engine's defaults (``THRESHOLD``, :func:`default_stride_ms`,
    ``SMOOTH_MS`` or one window for a streaming model, whose windows are already averages, ``SUPPRESSION_MS``,
    ``PATIENCE``)."""
    given = {"threshold": threshold, "stride_ms": stride_ms, "smooth_ms": smooth_ms,
             "suppression_ms": suppression_ms, "patience": patience}  # fmt: skip
    own = operating_point(model)
    if own.get("stride_ms") and is_streaming(model):  # a point tuned before the model ran in steps: the nearest
        own["stride_ms"] = max(1, round(own["stride_ms"] / step_ms(model))) * step_ms(model)
    value = {key: own.get(key) if given[key] is None else given[key] for key in given}
    stride = value["stride_ms"] or default_stride_ms(model)
    if value["smooth_ms"] is None:
        value["smooth_ms"] = stride if is_streaming(model) else SMOOTH_MS
    return Settings(
        THRESHOLD if value["threshold"] is None else value["threshold"], stride, value["smooth_ms"],
        SUPPRESSION_MS if value["suppression_ms"] is None else value["suppression_ms"], hold_ms,
        int(value["patience"] or PATIENCE),
    )  # fmt: skip


def windowing_of(model: Classifier, stride_ms: float) -> Windowing:
    """The window geometry of ``model`` at ``stride_ms``; a streaming model's stride must be a whole number of
    its steps."""
    w = Windowing.of(model.sample_rate, model.win_length, model.hop_length, stride_ms)
    if is_streaming(model) and w.stride_frames % model.step_frames:
        raise KWSError(f"the model decides every {step_ms(model):g} ms: the stride must be a multiple of it, "
                       f"not {stride_ms:g} ms")  # fmt: skip
    return w


def units_of(model: Classifier, windowing: Windowing) -> tuple[int, int]:
    """What the engine keeps per window: ``(span, stride)`` in feature frames for a window model, in outputs
    for a streaming one (the outputs a window's logits average, and the outputs between windows)."""
    if not is_streaming(model):
        return windowing.frames, windowing.stride_frames
    return model.window_outputs, windowing.stride_frames // model.step_frames


def lookahead_samples(model: Classifier, windowing: Windowing) -> int:
    """Samples a streaming model needs past the end of a window before it gives the window's output."""
    if not is_streaming(model):
        return 0
    needed = model.step_frames * (model.lead_outputs + model.window_outputs)  # frames from the window's start
    return max(0, needed - windowing.frames) * windowing.hop


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def window_probs(model: Classifier, windows: np.ndarray) -> np.ndarray:
    """``(batch, n_features, frames)`` features -> ``(batch, n_classes)`` softmax probabilities (float64)."""
    return softmax(model.logits(np.ascontiguousarray(windows, dtype=np.float32)))


def mean_probs(outputs: np.ndarray, span: int, stride: int) -> np.ndarray:
    """A streaming model's ``(n_classes, T)`` outputs -> ``(windows, n_classes)`` softmax probabilities of every
    window they hold, window ``j``'s logits being the mean of outputs ``[j * stride, j * stride + span)``."""
    rows = np.asarray(outputs, np.float64).T
    sums = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])  # running sums: O(T)
    starts = np.arange(0, len(rows) - span + 1, stride)
    return softmax((sums[starts + span] - sums[starts]) / span)


def stream_probs(model: StreamingClassifier, outputs: np.ndarray, windowing: Windowing) -> np.ndarray:
    """A streaming model's ``(n_classes, T)`` outputs from the start of a stream -> ``(windows, n_classes)``
    softmax probabilities of every window they complete at ``windowing``'s stride."""
    return mean_probs(outputs[:, model.lead_outputs :], *units_of(model, windowing))


def run_steps(model: StreamingClassifier, features: np.ndarray, chunk: int = STEP_CHUNK_FRAMES) -> np.ndarray:
    """A streaming model's outputs of a whole stream's ``(n_features, frames)`` features from its initial
    state, in calls of at most ``chunk`` frames (its whole steps only)."""
    step = model.step_frames
    chunk, whole = max(step, chunk // step * step), features.shape[1] // step * step
    state, parts = model.initial_state(), [np.zeros((len(model.labels), 0), np.float32)]
    for i in range(0, whole, chunk):
        part, state = model.frame_logits(features[:, i : min(i + chunk, whole)], state)
        parts.append(part)
    return np.concatenate(parts, axis=1)


class FeatureStream:
    """Feed audio in chunks of any size; get each new frame exactly once.

    Keeps fewer than one frame of samples between calls, so memory does not grow with the stream.
    """

    def __init__(self, model: Classifier) -> None:
        self.model = model
        self.pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append mono samples; return the ``(n_features, new_frames)`` features they complete."""
        buffer = np.concatenate([self.pending, np.asarray(samples, np.float32).reshape(-1)])
        win, hop = self.model.win_length, self.model.hop_length
        frames = frame_count(len(buffer), win, hop)
        self.pending = buffer[frames * hop :]
        if not frames:
            return np.zeros((self.model.n_features, 0), np.float32)
        return self.model.features(buffer[: (frames - 1) * hop + win])


def _as_mono(samples: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(to_mono(np.asarray(samples, dtype=np.float32)))


class Detector:
    """Streaming keyword detector.

    Every decision setting left None takes the model's own operating point, else the engine's default
    (:func:`settings_for`).

    Args:
        model: A trained model (:class:`Classifier`): :func:`~pipeline.train.model.load_model`'s or an
            :class:`~pipeline.runtime.onnx_model.OnnxModel`.
        threshold: Smoothed score a word must exceed.
        stride_ms: Step between model windows; a multiple of the feature hop (default:
            :func:`default_stride_ms`).
        smooth_ms: Span of the moving average of model outputs.
        suppression_ms: Refractory period after an emitted word.
        hold_ms: Longest wait between deciding a word and emitting it (None: until its run ends; see
            :mod:`pipeline.runtime.decision`).
        max_batch: Most windows per model call.
        patience: Consecutive windows whose raw top class must be the word.

    Example:
        >>> detector = Detector(load_model("runs/quickstart/checkpoints/best.ckpt"))  # doctest: +SKIP
        >>> for chunk in chunks:  # doctest: +SKIP
        ...     for word in detector.push(chunk, 44100):
        ...         print(word)
        >>> detector.flush()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Classifier,
        threshold: float | None = None,
        stride_ms: float | None = None,
        smooth_ms: float | None = None,
        suppression_ms: float | None = None,
        hold_ms: float | None = None,
        max_batch: int = MAX_BATCH,
        patience: int | None = None,
    ) -> None:
        if not model.labels:
            raise KWSError("the model has no labels")
        self.model = model
        self.streaming = is_streaming(model)
        self.labels = list(model.labels)
        self.settings = settings_for(model, threshold, stride_ms, smooth_ms, suppression_ms, hold_ms, patience)
        self.windowing = windowing_of(model, self.settings.stride_ms)
        self._span, self._stride = units_of(model, self.windowing)
        self.max_batch = max_batch
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new one at time 0."""
        self._features = FeatureStream(self.model)
        rows = len(self.labels) if self.streaming else self.model.n_features  # model outputs, or features
        self._units = np.zeros((rows, 0), np.float32)  # units (frames or outputs) from index _unit0 on
        self._unit0 = 0
        self._state = self.model.initial_state() if self.streaming else None
        self._steps = np.zeros((self.model.n_features, 0), np.float32)  # frames short of a whole step
        self._lead = self.model.lead_outputs if self.streaming else 0  # outputs still to drop
        self._next = 0  # index of the next window
        self._samples = 0  # model-rate samples received
        self._rate: int | None = None
        self._resampler: StreamResampler | None = None
        self._decider = Decider(self.labels, self.settings, self.windowing)

    @property
    def scores(self) -> dict[str, float]:
        """The latest smoothed score of every label (all zero before the first window)."""
        return dict(zip(self.labels, self._decider.smoothed.tolist()))

    @property
    def seconds(self) -> float:
        """Audio received so far, in seconds."""
        return self._samples / self.windowing.sample_rate

    def push(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Detection]:
        """Feed ``(n,)`` or ``(n, channels)`` float samples; return the words decided so far, in order.

        The rate must stay the same within a stream; audio at another rate than the model's is resampled.
        """
        if self._rate is None:
            self._rate = sample_rate
            if sample_rate != self.windowing.sample_rate:
                self._resampler = StreamResampler(sample_rate, self.windowing.sample_rate)
        elif sample_rate != self._rate:
            raise ValueError(f"the sample rate changed from {self._rate} to {sample_rate} Hz within a stream")
        audio = _as_mono(samples)
        return self._consume(self._resampler.push(audio) if self._resampler else audio)

    def flush(self) -> list[Detection]:
        """End the stream: pad it (see the module docstring), return the last words, and reset."""
        out = self._consume(self._resampler.flush()) if self._resampler else []
        clip = self._samples <= self.windowing.samples
        if self._samples:
            padded = self.windowing.padded_length(self._samples, self.settings.smooth_windows - 1)
            padded += lookahead_samples(self.model, self.windowing)
            out += self._consume(np.zeros(padded - self._samples, np.float32))
        out += self._decider.finish(clip)
        self.reset()
        return out

    def _consume(self, audio: np.ndarray) -> list[Detection]:
        self._samples += len(audio)
        new = self._features.push(audio)
        if self.streaming:
            new = self._run_steps(new)
        if not new.shape[1]:
            return []
        self._units = np.concatenate([self._units, new], axis=1)
        out, span, stride = [], self._span, self._stride
        total = self._unit0 + self._units.shape[1]
        count = (total - span) // stride + 1 - self._next if total >= span else 0
        if count > 0:
            offset = self._next * stride - self._unit0
            if self.streaming:
                batches = [mean_probs(self._units[:, offset:], span, stride)]
            else:
                windows = sliding_window_view(self._units[:, offset:], span, axis=1)[:, ::stride]
                batches = (window_probs(self.model, windows[:, i : i + self.max_batch].transpose(1, 0, 2))
                           for i in range(0, count, self.max_batch))  # fmt: skip
            index = self._next
            for probs in batches:
                out += self._decider.steps(index, probs)
                index += len(probs)
            self._next += count
        keep = min(self._next * stride, total)  # a stride longer than the span skips units yet to come
        self._units = self._units[:, keep - self._unit0 :].copy()
        self._unit0 = keep
        return out

    def _run_steps(self, frames: np.ndarray) -> np.ndarray:
        """New frames -> the streaming model's new outputs (whole steps; the rest waits), the lead dropped."""
        self._steps = np.concatenate([self._steps, frames], axis=1)
        whole = self._steps.shape[1] // self.model.step_frames * self.model.step_frames
        if not whole:
            return np.zeros((len(self.labels), 0), np.float32)
        outputs, self._state = self.model.frame_logits(self._steps[:, :whole], self._state)
        self._steps = self._steps[:, whole:]
        dropped = min(self._lead, outputs.shape[1])
        self._lead -= dropped
        return outputs[:, dropped:]


def offline_scores(
    model: Classifier, audio: np.ndarray, stride_ms: float = STRIDE_MS, tail_windows: int = 0,
    max_batch: int = MAX_BATCH,
) -> np.ndarray:  # fmt: skip
    """The offline reference: ``(windows, classes)`` softmax outputs of every window of a whole signal.

    ``audio`` is mono at the model's rate. It is padded as :meth:`Detector.flush` pads (``tail_windows`` is
    the smoothing window minus one), every window is cut from it, and each window's features are computed
    from its own samples, independently of the stream; the model runs on batches of ``max_batch`` windows.
    A streaming model instead runs over the features of the whole padded signal from its initial state
    (:func:`run_steps`), padded further by what it needs past the last window (:func:`lookahead_samples`).
    """
    w = windowing_of(model, stride_ms)
    audio = np.asarray(audio, np.float32).reshape(-1)
    padded = w.padded_length(len(audio), tail_windows)
    count = (padded - w.samples) // w.stride + 1
    audio = np.pad(audio, (0, padded + lookahead_samples(model, w) - len(audio)))
    if is_streaming(model):
        return stream_probs(model, run_steps(model, model.features(audio)), w)[:count]
    windows = sliding_window_view(audio, w.samples)[:: w.stride]
    parts = [window_probs(model, model.features(np.ascontiguousarray(windows[i : i + max_batch])))
             for i in range(0, len(windows), max_batch)]  # fmt: skip
    return np.concatenate(parts)


def offline_detect(
    model: Classifier, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, settings: Settings | None = None
) -> list[Detection]:
    """The offline reference detections of a whole signal: :func:`offline_scores`, then
    :func:`~pipeline.runtime.decision.decide`. The whole signal is resampled at once."""
    settings = settings or settings_for(model)
    audio = resample(_as_mono(audio), sample_rate, model.sample_rate)
    probs = offline_scores(model, audio, settings.stride_ms, settings.smooth_windows - 1)
    w = windowing_of(model, settings.stride_ms)
    return decide(probs, list(model.labels), settings, w, clip=len(audio) <= w.samples)
