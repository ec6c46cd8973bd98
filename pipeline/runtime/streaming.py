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

**Streaming models** (causal, ``model.causal``; :mod:`pipeline.train.models.causal`) run frame by frame instead: each
new frame goes once through the model, which keeps its layers' past frames as state, and gives that frame's
logits; a window's logits are the mean of its frames' logits. A window then costs a mean, not a model run, so
such a model decides every ``STREAM_STRIDE_MS`` by default. The reference is the model's ordinary
(non-streaming) run over the whole signal's frames at once, which the stream equals for any chunking. Within a
stream a window's first frames see the audio before it, where training clips saw silence (zero padding).
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
STREAM_STRIDE_MS = 10.0  # default decision step of a streaming model: one feature hop


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
    """A streaming model (``streaming`` true): it also runs frame by frame, carrying a state."""

    streaming: bool

    def initial_state(self) -> np.ndarray:
        """The state before a stream's first frame."""
        ...

    def frame_logits(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n_features, T)`` new frames and the state -> ``(n_classes, T)`` frame logits and the next state."""
        ...


def is_streaming(model: Classifier) -> TypeGuard[StreamingClassifier]:
    """Whether ``model`` runs frame by frame (a causal model) rather than window by window."""
    return bool(getattr(model, "streaming", False))


def default_stride_ms(model: Classifier) -> float:
    """The engine's default decision step for ``model``: ``STREAM_STRIDE_MS`` for a streaming one, else
    ``STRIDE_MS``."""
    return STREAM_STRIDE_MS if is_streaming(model) else STRIDE_MS


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
    """The window geometry of ``model`` at ``stride_ms``."""
    return Windowing.of(model.sample_rate, model.win_length, model.hop_length, stride_ms)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def window_probs(model: Classifier, windows: np.ndarray) -> np.ndarray:
    """``(batch, n_features, frames)`` features -> ``(batch, n_classes)`` softmax probabilities (float64)."""
    return softmax(model.logits(np.ascontiguousarray(windows, dtype=np.float32)))


def mean_probs(frame_logits: np.ndarray, windowing: Windowing) -> np.ndarray:
    """A streaming model's ``(n_classes, frames)`` frame logits -> ``(windows, n_classes)`` softmax probabilities
    of every window they hold at ``windowing``'s stride, from their first frame on (a window's logits are the
    mean of its frames')."""
    rows = np.asarray(frame_logits, np.float64).T
    sums = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])  # running sums: O(frames)
    starts = np.arange(0, len(rows) - windowing.frames + 1, windowing.stride_frames)
    return softmax((sums[starts + windowing.frames] - sums[starts]) / windowing.frames)


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
        self.max_batch = max_batch
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new one at time 0."""
        self._features = FeatureStream(self.model)
        rows = len(self.labels) if self.streaming else self.model.n_features  # frame logits, or features
        self._frames = np.zeros((rows, 0), np.float32)  # frames from index _frame0 on
        self._state = self.model.initial_state() if self.streaming else None
        self._frame0 = 0
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
            out += self._consume(np.zeros(padded - self._samples, np.float32))
        out += self._decider.finish(clip)
        self.reset()
        return out

    def _consume(self, audio: np.ndarray) -> list[Detection]:
        self._samples += len(audio)
        new = self._features.push(audio)
        if not new.shape[1]:
            return []
        if self.streaming:
            new, self._state = self.model.frame_logits(new, self._state)
        self._frames = np.concatenate([self._frames, new], axis=1)
        w, out = self.windowing, []
        total = self._frame0 + self._frames.shape[1]
        count = (total - w.frames) // w.stride_frames + 1 - self._next if total >= w.frames else 0
        if count > 0:
            offset = self._next * w.stride_frames - self._frame0
            if self.streaming:
                batches = [mean_probs(self._frames[:, offset:], w)]
            else:
                windows = sliding_window_view(self._frames[:, offset:], w.frames, axis=1)[:, :: w.stride_frames]
                batches = (window_probs(self.model, windows[:, i : i + self.max_batch].transpose(1, 0, 2))
                           for i in range(0, count, self.max_batch))  # fmt: skip
            index = self._next
            for probs in batches:
                out += self._decider.steps(index, probs)
                index += len(probs)
            self._next += count
        keep = self._next * w.stride_frames
        self._frames = self._frames[:, keep - self._frame0 :].copy()
        self._frame0 = keep
        return out


def offline_scores(
    model: Classifier, audio: np.ndarray, stride_ms: float = STRIDE_MS, tail_windows: int = 0,
    max_batch: int = MAX_BATCH,
) -> np.ndarray:  # fmt: skip
    """The offline reference: ``(windows, classes)`` softmax outputs of every window of a whole signal.

    ``audio`` is mono at the model's rate. It is padded as :meth:`Detector.flush` pads (``tail_windows`` is
    the smoothing window minus one), every window is cut from it, and each window's features are computed
    from its own samples, independently of the stream; the model runs on batches of ``max_batch`` windows.
    A streaming model instead runs once over the features of the whole padded signal (from its initial state),
    and each window's logits are the mean of its frames' logits.
    """
    w = windowing_of(model, stride_ms)
    audio = np.asarray(audio, np.float32).reshape(-1)
    audio = np.pad(audio, (0, w.padded_length(len(audio), tail_windows) - len(audio)))
    if is_streaming(model):
        return mean_probs(model.frame_logits(model.features(audio), model.initial_state())[0], w)
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
