"""Streaming keyword detection: one engine for files, pipes and microphones.

**Windows.** The model classifies 1 s windows (``CLIP_SAMPLES``, 98 frames of 10 ms). Window ``i`` of a
stream covers samples ``[i * S, i * S + W)``, where ``W`` is one window and the stride ``S`` is a whole
number of feature hops, so every window is a run of consecutive front-end frames. :class:`Detector` computes
each frame once (:class:`~pipeline.features.FeatureStream`), keeps the frames that later windows still need,
and sends every window a pushed chunk completes to the model in batches of at most ``max_batch``. State is
bounded by one window plus the chunk being processed: memory does not grow with the stream.

**Decision rule** (:class:`Decider`, shared by the streaming engine and the offline reference), per window:

1. *Smoothing*: the softmax outputs of the last ``K = round(smooth_ms / stride_ms)`` windows (at least 1)
   are averaged (fewer at the start of a stream).
2. *Threshold and top class*: a word is decided when its smoothed score is the top class **and** exceeds
   ``threshold``. ``_silence_``, ``_unknown_`` (any label starting with ``_``) are never words: when one of
   them is the top class, nothing is decided.
3. *Re-arming*: after a word is decided it cannot be decided again until its smoothed score has fallen to the
   threshold or below, so one utterance never gives two detections.
4. *Suppression*: after a word is emitted, no word is decided for ``suppression_ms`` (a refractory period
   that stops the tail of one word from firing as another).

**Word times.** A word lies inside every window that recognises it, hence inside their intersection. While a
word is pending, the engine follows its *run*: the consecutive windows whose raw (unsmoothed) top class is the
word, at most ``W / S`` of them. The word is reported from the start of the run's last window to the end of
its first window; its score is the peak smoothed score. Models also recognise words that stick out of the
window a little, so the span can be narrower than the word; its centre is the reliable part. If the word was
never the raw top class within the smoothing span, the decision window itself is reported.

**Delay.** A word is emitted when its run ends (the first window whose raw top class is another label) or
reaches ``W / S`` windows, or at once when it is decided after its run ended. The window that emits it ends at
most ``W + (K - 1) * S`` after the reported end of the word (1 s at the defaults) in stream time; add the
caller's chunk length for the wall-clock delay.

**End of stream.** :meth:`Detector.flush` pads with zeros up to the end of the next window (a stream shorter
than one window becomes exactly one zero-padded window), then ``K - 1`` strides more so that the moving
average of the last real window is complete, and emits any pending word.

**Resampling.** Audio at another rate goes through :class:`StreamResampler`, a chunked form of
:func:`pipeline.audio.resample` (torchaudio's windowed-sinc kernel) that gives the same samples whatever the
chunking; only the length of the last block may differ from the whole-file function by one sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torchaudio.functional.functional as _taf
from torch import Tensor

from pipeline.audio import CLIP_SECONDS, SAMPLE_RATE, resample, to_mono
from pipeline.data.speech_commands import is_word
from pipeline.errors import KWSError
from pipeline.features import FeatureStream, FrontEnd

# Defaults, tuned with `kws evaluate-stream --tune` (pipeline.stream_eval.tune) on a 10-minute development stream
# of speech, `kws make-stream --source data/synth_gsc12 --split validation`: the quickstart corpus's validation
# voices (never fitted in training) saying all 35 words (58 command words) over its noise, scored with the
# quickstart model. Of strides 100-400 ms, 400 ms found the most words (a 1 s window still holds any word up to
# 600 ms whole) at half the cost of 200 ms; threshold 0.6; longer smoothing changed nothing. Re-tune for your own
# model and audio the same way.
STRIDE_MS = 400.0  # one model call per 400 ms of audio
THRESHOLD = 0.6  # smoothed softmax score a word must exceed
SMOOTH_MS = 400.0  # moving average over the last window(s): one window at the default stride
SUPPRESSION_MS = 1000.0  # refractory period after an emitted word
MAX_BATCH = 32  # windows per model call: on one CPU thread the cost per window is lowest near 32


class Classifier(Protocol):
    """What the engine needs of a model: a :class:`~pipeline.module.KWSModule`, or the :class:`~pipeline.model.KWSModel` that
    :func:`~pipeline.model.load_model` returns."""

    labels: list[str] | None
    front_end: FrontEnd

    def classify(self, features: Tensor) -> Tensor: ...

    def eval(self) -> Any: ...


@dataclass(frozen=True)
class Detection:
    """A detected word; ``start`` and ``end`` in seconds from the start of the stream.

    ``score`` is the peak smoothed softmax probability of the word while it was pending.
    """

    word: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Settings:
    """The detector's knobs (see the module docstring for the rule they drive)."""

    threshold: float = THRESHOLD
    stride_ms: float = STRIDE_MS
    smooth_ms: float = SMOOTH_MS
    suppression_ms: float = SUPPRESSION_MS

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise KWSError(f"the threshold must lie between 0 and 1, not {self.threshold:g}")
        if self.smooth_ms < 0 or self.suppression_ms < 0:
            raise KWSError("the smoothing and suppression times cannot be negative")

    @property
    def smooth_windows(self) -> int:
        """Number of model outputs in the moving average."""
        return max(1, round(self.smooth_ms / self.stride_ms))

    @property
    def suppression_windows(self) -> int:
        """Refractory period in strides."""
        return math.ceil(self.suppression_ms / self.stride_ms - 1e-9)


@dataclass(frozen=True)
class Windowing:
    """Where the model's windows lie in a stream, in model-rate samples and feature frames."""

    sample_rate: int
    samples: int  # W: samples per window
    frames: int  # feature frames per window
    hop: int  # samples per feature frame
    stride_frames: int  # frames between window starts

    @classmethod
    def of(cls, front_end: FrontEnd, stride_ms: float) -> Windowing:
        """The windowing of ``front_end`` at ``stride_ms``; the stride must be a whole number of hops."""
        hop_ms = front_end.config.hop_ms
        steps = stride_ms / hop_ms
        rate = front_end.config.sample_rate
        samples = round(rate * CLIP_SECONDS)
        if stride_ms <= 0 or abs(steps - round(steps)) > 1e-6 or round(steps) * front_end.hop_length > samples:
            raise KWSError(
                f"the stride must be a positive multiple of the {hop_ms:g} ms feature hop, at most one window "
                f"({1000 * CLIP_SECONDS:g} ms), not {stride_ms:g} ms"
            )
        return cls(rate, samples, front_end.num_frames(samples), front_end.hop_length, round(steps))

    @property
    def stride(self) -> int:
        """S: samples between window starts."""
        return self.stride_frames * self.hop

    def start(self, index: int) -> float:
        """Start time in seconds of window ``index``."""
        return index * self.stride / self.sample_rate

    def end(self, index: int) -> float:
        """End time in seconds of window ``index``."""
        return (index * self.stride + self.samples) / self.sample_rate

    def padded_length(self, n_samples: int, tail_windows: int) -> int:
        """Stream length after the end-of-stream padding: the next window end, then ``tail_windows`` strides."""
        extra = max(0, n_samples - self.samples)
        return self.samples + math.ceil(extra / self.stride) * self.stride + tail_windows * self.stride


@dataclass
class _Pending:
    label: int
    first: int  # first window of the word's run
    last: int  # latest window of the run
    peak: float


class Decider:
    """The decision rule over successive window probabilities (see the module docstring).

    Args:
        labels: Class names in model output order.
        settings: Threshold, smoothing, suppression (and the stride they are counted in).
        windowing: The window geometry, for times.
    """

    def __init__(self, labels: list[str], settings: Settings, windowing: Windowing) -> None:
        self.labels, self.settings, self.windowing = list(labels), settings, windowing
        n = len(self.labels)
        self.is_word = np.array([is_word(label) for label in self.labels])
        self.run_cap = max(1, windowing.samples // windowing.stride)
        self.recent = np.zeros((settings.smooth_windows, n))
        self.seen = 0
        self.smoothed = np.zeros(n)
        self.run_first = np.full(n, -(2**62), dtype=np.int64)
        self.run_last = np.full(n, -(2**62), dtype=np.int64)
        self.armed = np.ones(n, dtype=bool)
        self.quiet_until = 0
        self.index = -1
        self.pending: _Pending | None = None

    def step(self, index: int, probs: np.ndarray) -> list[Detection]:
        """Take the softmax output of window ``index`` (0, 1, 2, ...); return the words it completes."""
        self.index = index
        top = int(probs.argmax())
        if self.run_last[top] != index - 1:
            self.run_first[top] = index
        self.run_last[top] = index
        k = len(self.recent)
        self.recent[index % k] = probs
        self.seen = min(self.seen + 1, k)
        self.smoothed = self.recent[: self.seen].mean(axis=0)
        self.armed |= self.smoothed <= self.settings.threshold
        out: list[Detection] = []
        pending = self.pending
        if pending is not None:
            if self._alive(pending, index):
                pending.last = index
                pending.peak = max(pending.peak, float(self.smoothed[pending.label]))
                return out
            out.append(self._emit(index))
        if index >= self.quiet_until:
            c = int(self.smoothed.argmax())
            score = float(self.smoothed[c])
            if self.is_word[c] and self.armed[c] and score > self.settings.threshold:
                self.armed[c] = False
                last = int(self.run_last[c])
                if last > index - k:
                    self.pending = _Pending(c, max(int(self.run_first[c]), last - self.run_cap + 1), last, score)
                else:
                    self.pending = _Pending(c, index, index, score)
                if not self._alive(self.pending, index):
                    out.append(self._emit(index))
        return out

    def finish(self) -> list[Detection]:
        """End of stream: emit the pending word, if any."""
        return [self._emit(self.index)] if self.pending is not None else []

    def _alive(self, pending: _Pending, index: int) -> bool:
        return self.run_last[pending.label] == index and index - pending.first < self.run_cap

    def _emit(self, index: int) -> Detection:
        p, w = self.pending, self.windowing
        assert p is not None
        self.pending = None
        self.quiet_until = index + self.settings.suppression_windows
        return Detection(self.labels[p.label], w.start(p.last), w.end(p.first), p.peak)


def decide(probs: Iterable[np.ndarray], labels: list[str], settings: Settings, windowing: Windowing) -> list[Detection]:
    """Run the decision rule over the window outputs of a whole stream (windows 0, 1, 2, ...)."""
    decider = Decider(labels, settings, windowing)
    found = [d for i, row in enumerate(probs) for d in decider.step(i, np.asarray(row, dtype=np.float64))]
    return found + decider.finish()


@torch.inference_mode()
def window_probs(module: Classifier, features: Tensor) -> np.ndarray:
    """``(batch, n_features, frames)`` features -> ``(batch, n_classes)`` softmax probabilities (float64)."""
    return module.classify(features.contiguous()).softmax(-1).double().numpy()


class StreamResampler:
    """Chunked form of :func:`pipeline.audio.resample`: the same output samples whatever the chunk sizes.

    torchaudio's resampler is a strided convolution: each block of ``orig`` input samples (rates divided by
    their gcd) gives ``new`` output samples from a kernel that reaches ``width`` samples to either side. This
    class keeps those ``width`` samples of history and computes every block as soon as its input is there.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        gcd = math.gcd(orig_sr, new_sr)
        self.orig, self.new = orig_sr // gcd, new_sr // gcd
        # torchaudio's own kernel (a private helper, so that the output equals resample() exactly)
        self.kernel, self.width = _taf._get_sinc_resample_kernel(orig_sr, new_sr, gcd, dtype=torch.float32)
        self.buffer = torch.zeros(self.width)  # left zero padding, as resample() pads
        self.received = 0
        self.sent = 0

    def _blocks(self) -> Tensor:
        size = self.kernel.shape[-1]
        blocks = (self.buffer.numel() - size) // self.orig + 1 if self.buffer.numel() >= size else 0
        if blocks <= 0:
            return torch.zeros(0)
        used = self.buffer[: (blocks - 1) * self.orig + size]
        out = torch.nn.functional.conv1d(used[None, None], self.kernel, stride=self.orig)
        self.buffer = self.buffer[blocks * self.orig :]
        return out[0].t().reshape(-1)

    def push(self, samples: Tensor) -> Tensor:
        """Take input samples; return the output samples they complete."""
        self.buffer = torch.cat([self.buffer, samples.reshape(-1).float()])
        self.received += samples.numel()
        out = self._blocks()
        self.sent += out.numel()
        return out

    def flush(self) -> Tensor:
        """End of input: the remaining output samples (zero padding on the right, as resample() pads)."""
        self.buffer = torch.cat([self.buffer, torch.zeros(self.width + self.orig)])
        total = -(-self.new * self.received // self.orig)
        out = self._blocks()[: max(0, total - self.sent)]
        self.sent += out.numel()
        return out


def _as_mono_tensor(samples: np.ndarray | Tensor) -> Tensor:
    if isinstance(samples, Tensor):
        samples = samples.detach().cpu().numpy()
    return torch.from_numpy(np.ascontiguousarray(to_mono(np.asarray(samples, dtype=np.float32))))


class Detector:
    """Streaming keyword detector.

    Args:
        module: A trained model (put in eval mode here): :func:`~pipeline.model.load_model`'s, or a ``KWSModule``.
        threshold: Smoothed score a word must exceed.
        stride_ms: Step between model windows; a multiple of the feature hop.
        smooth_ms: Span of the moving average of model outputs.
        suppression_ms: Refractory period after an emitted word.
        max_batch: Most windows per model call.

    Example:
        >>> detector = Detector(load_model("runs/quickstart/checkpoints/best.ckpt"))  # doctest: +SKIP
        >>> for chunk in chunks:  # doctest: +SKIP
        ...     for word in detector.push(chunk, 44100):
        ...         print(word)
        >>> detector.flush()  # doctest: +SKIP
    """

    def __init__(
        self,
        module: Classifier,
        threshold: float = THRESHOLD,
        stride_ms: float = STRIDE_MS,
        smooth_ms: float = SMOOTH_MS,
        suppression_ms: float = SUPPRESSION_MS,
        max_batch: int = MAX_BATCH,
    ) -> None:
        if not module.labels:
            raise KWSError("the model has no labels")
        self.module = module.eval()
        self.labels = list(module.labels)
        self.settings = Settings(threshold, stride_ms, smooth_ms, suppression_ms)
        self.windowing = Windowing.of(module.front_end, stride_ms)
        self.max_batch = max_batch
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new one at time 0."""
        self._features = FeatureStream(self.module.front_end)
        self._frames = torch.zeros(self.module.front_end.n_features, 0)  # frames from index _frame0 on
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

    def push(self, samples: np.ndarray | Tensor, sample_rate: int = SAMPLE_RATE) -> list[Detection]:
        """Feed ``(n,)`` or ``(n, channels)`` float samples; return the words decided so far, in order.

        The rate must stay the same within a stream; audio at another rate than the model's is resampled.
        """
        if self._rate is None:
            self._rate = sample_rate
            if sample_rate != self.windowing.sample_rate:
                self._resampler = StreamResampler(sample_rate, self.windowing.sample_rate)
        elif sample_rate != self._rate:
            raise ValueError(f"the sample rate changed from {self._rate} to {sample_rate} Hz within a stream")
        audio = _as_mono_tensor(samples)
        return self._consume(self._resampler.push(audio) if self._resampler else audio)

    def flush(self) -> list[Detection]:
        """End the stream: pad it (see the module docstring), return the last words, and reset."""
        out = self._consume(self._resampler.flush()) if self._resampler else []
        if self._samples:
            tail = self.settings.smooth_windows - 1
            out += self._consume(torch.zeros(self.windowing.padded_length(self._samples, tail) - self._samples))
        out += self._decider.finish()
        self.reset()
        return out

    def _consume(self, audio: Tensor) -> list[Detection]:
        self._samples += audio.numel()
        new = self._features.push(audio)
        if not new.shape[1]:
            return []
        self._frames = torch.cat([self._frames, new], dim=1)
        w, out = self.windowing, []
        total = self._frame0 + self._frames.shape[1]
        count = (total - w.frames) // w.stride_frames + 1 - self._next if total >= w.frames else 0
        if count > 0:
            offset = self._next * w.stride_frames - self._frame0
            windows = self._frames[:, offset:].unfold(1, w.frames, w.stride_frames)  # (features, count, frames)
            for begin in range(0, count, self.max_batch):
                probs = window_probs(self.module, windows[:, begin : begin + self.max_batch].permute(1, 0, 2))
                for j, row in enumerate(probs):
                    out += self._decider.step(self._next + begin + j, row)
            self._next += count
        keep = self._next * w.stride_frames
        self._frames = self._frames[:, keep - self._frame0 :].clone()
        self._frame0 = keep
        return out


def offline_scores(
    module: Classifier, audio: Tensor, stride_ms: float = STRIDE_MS, tail_windows: int = 0, max_batch: int = MAX_BATCH
) -> np.ndarray:
    """The offline reference: ``(windows, classes)`` softmax outputs of every window of a whole signal.

    ``audio`` is mono at the model's rate. It is padded as :meth:`Detector.flush` pads (``tail_windows`` is
    the smoothing window minus one), every window is cut from it, and each window's features are computed
    from its own samples, independently of the stream; the model runs on batches of ``max_batch`` windows.
    """
    module.eval()
    w = Windowing.of(module.front_end, stride_ms)
    audio = audio.reshape(-1).float()
    audio = torch.nn.functional.pad(audio, (0, w.padded_length(audio.numel(), tail_windows) - audio.numel()))
    windows = audio.unfold(0, w.samples, w.stride)
    with torch.inference_mode():
        parts = [window_probs(module, module.front_end(b)) for b in windows.split(max_batch)]
    return np.concatenate(parts)


def offline_detect(
    module: Classifier, audio: np.ndarray | Tensor, sample_rate: int = SAMPLE_RATE, settings: Settings | None = None
) -> list[Detection]:
    """The offline reference detections of a whole signal: :func:`offline_scores`, then :func:`decide`.

    The whole signal is resampled at once with :func:`pipeline.audio.resample`.
    """
    settings = settings or Settings()
    audio = resample(_as_mono_tensor(audio), sample_rate, module.front_end.config.sample_rate)
    probs = offline_scores(module, audio, settings.stride_ms, settings.smooth_windows - 1)
    return decide(probs, list(module.labels), settings, Windowing.of(module.front_end, settings.stride_ms))
