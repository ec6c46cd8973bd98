"""The decision rule: from the softmax outputs of successive 1 s windows to words with times.

Shared by the streaming engine (:mod:`pipeline.runtime.streaming`, any runtime) and the offline reference; numpy only.

**Windows.** Window ``i`` of a stream covers samples ``[i * S, i * S + W)``, where ``W`` is one window and the
stride ``S`` is a whole number of feature hops (:class:`Windowing`).

**Decision rule** (:class:`Decider`, shared by the streaming engine and the offline reference), per window:

1. *Smoothing*: the softmax outputs of the last ``K = round(smooth_ms / stride_ms)`` windows (at least 1)
   are averaged (fewer at the start of a stream).
2. *Threshold and top class*: a word is decided when its smoothed score is the top class **and** exceeds
   ``threshold``. ``_silence_``, ``_unknown_`` (any label starting with ``_``) are never words: when one of
   them is the top class, nothing is decided.
3. *Patience* (``patience`` P): for P > 1, a word is decided only when its raw (unsmoothed) top-class run has
   lasted P windows up to this one: a word spans several windows, a stray window does not (openWakeWord's
   ``patience``). P = 1 asks nothing more.
4. *Re-arming*: after a word is decided it cannot be decided again until its smoothed score has fallen to the
   threshold or below, so one utterance never gives two detections.
5. *Suppression*: after a word is emitted, no word is decided for ``suppression_ms`` (a refractory period
   that stops the tail of one word from firing as another).

**A clip** (a stream no longer than one window, ``Decider.finish(clip=True)``): when the rule decided nothing,
the window's top class is the word if it is one, as ``kws predict`` labels the clip, so that a clip is decided
as well as it is classified; its span is the window.

**Operating point.** A model may carry the settings it was tuned at (:class:`Settings`' ``to_dict``, stored in a
checkpoint under ``kws_decision`` and in an export's metadata under ``decision``); the doors use them unless
told otherwise (:func:`pipeline.runtime.streaming.settings_for`).

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

**Deciding early** (``hold_ms``): a decided word is emitted at the latest ``floor(hold_ms / stride_ms)`` windows
after the window that decided it (0: by that window), even if its run goes on; its span is the run seen so
far, so its times are coarser (on a TTS test stream the bundled model's word centres were off by 221 ms
median instead of 121 ms). Re-arming and suppression still keep one detection per utterance; suppression
counts from the emission, so a word that follows closely can be decided sooner.

**Bulk steps.** At a 10 ms step (a streaming model) most windows decide nothing; :meth:`Decider.steps` takes such
stretches at once with array operations and gives exactly the words of :meth:`Decider.step` window by window
(``tests/test_decision.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import KWSError
from pipeline.runtime.audio import CLIP_SECONDS, clip_samples, frame_count
from pipeline.runtime.labels import is_word

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
PATIENCE = 1  # consecutive windows whose raw top class must be the word (1: no such condition)
OPERATING_POINT = ("threshold", "stride_ms", "smooth_ms", "suppression_ms", "patience")  # what a model carries
MARGIN = 1e-9  # smoothed scores this close to the threshold are compared one window at a time (Decider.steps)


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
    hold_ms: float | None = None  # longest wait between deciding a word and emitting it; None: its run's end
    patience: int = PATIENCE  # consecutive windows whose raw top class must be the word

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise KWSError(f"the threshold must lie between 0 and 1, not {self.threshold:g}")
        if self.smooth_ms < 0 or self.suppression_ms < 0 or (self.hold_ms or 0) < 0:
            raise KWSError("the smoothing, suppression and hold times cannot be negative")
        if self.patience < 1 or self.patience != int(self.patience):
            raise KWSError(f"the patience must be a whole number of windows, at least 1, not {self.patience:g}")

    def to_dict(self) -> dict[str, float]:
        """The operating point a model carries (``OPERATING_POINT``; the hold time is the door's choice)."""
        return {key: getattr(self, key) for key in OPERATING_POINT}

    def describe(self) -> str:
        """One line: threshold, stride, smoothing, suppression and patience."""
        return (f"threshold {self.threshold:g}, stride {self.stride_ms:g} ms, smoothing {self.smooth_ms:g} ms, "
                f"suppression {self.suppression_ms:g} ms, patience {self.patience}")  # fmt: skip

    @property
    def smooth_windows(self) -> int:
        """Number of model outputs in the moving average."""
        return max(1, round(self.smooth_ms / self.stride_ms))

    @property
    def suppression_windows(self) -> int:
        """Refractory period in strides."""
        return math.ceil(self.suppression_ms / self.stride_ms - 1e-9)

    @property
    def hold_windows(self) -> int | None:
        """Most strides a decided word waits before it is emitted (None: until its run ends)."""
        return None if self.hold_ms is None else math.floor(self.hold_ms / self.stride_ms + 1e-9)


@dataclass(frozen=True)
class Windowing:
    """Where the model's windows lie in a stream, in model-rate samples and feature frames."""

    sample_rate: int
    samples: int  # W: samples per window
    frames: int  # feature frames per window
    hop: int  # samples per feature frame
    stride_frames: int  # frames between window starts

    @classmethod
    def of(cls, sample_rate: int, win_length: int, hop_length: int, stride_ms: float) -> Windowing:
        """The 1 s windows of a front end (frames of ``win_length`` samples every ``hop_length``) at
        ``stride_ms``; the stride must be a whole number of hops."""
        hop_ms = 1000 * hop_length / sample_rate
        steps = stride_ms / hop_ms
        samples = clip_samples(sample_rate)
        if stride_ms <= 0 or abs(steps - round(steps)) > 1e-6 or round(steps) * hop_length > samples:
            raise KWSError(
                f"the stride must be a positive multiple of the {hop_ms:g} ms feature hop, at most one window "
                f"({1000 * CLIP_SECONDS:g} ms), not {stride_ms:g} ms"
            )
        return cls(sample_rate, samples, frame_count(samples, win_length, hop_length), hop_length, round(steps))

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
    decided: int  # the window that decided it


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
        self.first_probs: np.ndarray | None = None  # window 0's output, for a clip (finish)
        self.emitted = False

    def step(self, index: int, probs: np.ndarray) -> list[Detection]:
        """Take the softmax output of window ``index`` (0, 1, 2, ...); return the words it completes."""
        self.index = index
        if index == 0:
            self.first_probs = np.array(probs, dtype=np.float64)
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
            if self.is_word[c] and self.armed[c] and score > self.settings.threshold and self._patient(c, index):
                self.armed[c] = False
                last = int(self.run_last[c])
                if last > index - k:
                    first = max(int(self.run_first[c]), last - self.run_cap + 1)
                    self.pending = _Pending(c, first, last, score, index)
                else:
                    self.pending = _Pending(c, index, index, score, index)
                if not self._alive(self.pending, index):
                    out.append(self._emit(index))
        return out

    def steps(self, first: int, probs: np.ndarray) -> list[Detection]:
        """Take the softmax outputs of windows ``first, first + 1, ...`` (the rows of ``probs``); the same as
        :meth:`step` on each row, but stretches of rows that cannot decide anything are taken at once.

        A row is taken in bulk when no word is pending, it lies in the suppression period or no word's smoothed
        score exceeds the threshold, and no smoothed score lies within ``MARGIN`` of the threshold (so that no
        comparison depends on the order of a sum); the other rows go through :meth:`step`.
        """
        probs = np.asarray(probs, dtype=np.float64)
        smoothed = self._averages(first, probs)
        threshold = self.settings.threshold
        calm = (smoothed[:, self.is_word] <= threshold).all(axis=1)  # no word above the threshold
        clear = (np.abs(smoothed - threshold) > MARGIN).all(axis=1)
        out: list[Detection] = []
        i = 0
        while i < len(probs):
            if self.pending is None:
                quiet = np.arange(first + i, first + len(probs)) < self.quiet_until
                busy = np.flatnonzero(~((quiet | calm[i:]) & clear[i:]))
                inert = int(busy[0]) if len(busy) else len(probs) - i
                if inert:
                    self._take(first + i, probs[i : i + inert], smoothed[i : i + inert])
                    i += inert
                    continue
            out += self.step(first + i, probs[i])
            i += 1
        return out

    def _averages(self, first: int, probs: np.ndarray) -> np.ndarray:
        """The smoothed scores each row of ``probs`` (windows ``first, ...``) gets, up to rounding."""
        k = len(self.recent)
        rows = np.concatenate([self.recent[np.arange(first - self.seen, first) % k], probs])
        sums = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
        end = np.arange(self.seen + 1, len(rows) + 1)
        start = np.maximum(end - k, 0)
        return (sums[end] - sums[start]) / (end - start)[:, None]

    def _take(self, first: int, probs: np.ndarray, smoothed: np.ndarray) -> None:
        """:meth:`step` over rows that decide nothing, at once: their runs, average and re-arming."""
        n, k = len(probs), len(self.recent)
        if first == 0:
            self.first_probs = np.array(probs[0], dtype=np.float64)
        tops = probs.argmax(axis=1)
        for label in np.unique(tops):
            where = np.flatnonzero(tops == label)
            breaks = np.flatnonzero(np.diff(where) != 1)
            run = where[breaks[-1] + 1] if len(breaks) else where[0]  # where the label's last run here starts
            if run or self.run_last[label] != first - 1:
                self.run_first[label] = first + run
            self.run_last[label] = first + where[-1]
        for j in range(max(0, n - k), n):
            self.recent[(first + j) % k] = probs[j]
        self.seen = min(self.seen + n, k)
        self.smoothed = self.recent[: self.seen].mean(axis=0)
        self.armed |= (smoothed <= self.settings.threshold).any(axis=0)
        self.index = first + n - 1

    def finish(self, clip: bool = False) -> list[Detection]:
        """End of stream: emit the pending word, if any; ``clip``: the stream was one window at most (see the
        module docstring)."""
        if self.pending is not None:
            return [self._emit(self.index)]
        if clip and not self.emitted and self.first_probs is not None:
            top = int(self.first_probs.argmax())
            if self.is_word[top]:
                self.emitted = True
                w = self.windowing
                return [Detection(self.labels[top], w.start(0), w.end(0), float(self.first_probs[top]))]
        return []

    def _patient(self, label: int, index: int) -> bool:
        """Whether ``label``'s raw top-class run has lasted ``patience`` windows up to window ``index``."""
        p = self.settings.patience
        return p <= 1 or (self.run_last[label] == index and index - self.run_first[label] + 1 >= p)

    def _alive(self, pending: _Pending, index: int) -> bool:
        hold = self.settings.hold_windows
        return (self.run_last[pending.label] == index and index - pending.first < self.run_cap
                and (hold is None or index - pending.decided < hold))  # fmt: skip

    def _emit(self, index: int) -> Detection:
        p, w = self.pending, self.windowing
        assert p is not None
        self.pending, self.emitted = None, True
        self.quiet_until = index + self.settings.suppression_windows
        return Detection(self.labels[p.label], w.start(p.last), w.end(p.first), p.peak)


def decide(
    probs: Iterable[np.ndarray] | np.ndarray, labels: list[str], settings: Settings, windowing: Windowing,
    clip: bool = False,
) -> list[Detection]:  # fmt: skip
    """Run the decision rule over the window outputs of a whole stream (windows 0, 1, 2, ...); ``clip``: the
    stream was one window at most."""
    decider = Decider(labels, settings, windowing)
    rows = np.asarray(list(probs) if not isinstance(probs, np.ndarray) else probs, dtype=np.float64)
    return (decider.steps(0, rows) if len(rows) else []) + decider.finish(clip)
