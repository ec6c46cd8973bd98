"""Scoring streaming detections against a stream's truth: ``kws evaluate-stream``.

Streams and their truth come from ``kws make-stream`` (:mod:`pipeline.data.streams`). ``evaluate-stream``
scores the streaming detector against the truth with the statistics of TensorFlow's
``test_streaming_accuracy``: every detection, in time order, is matched to the earliest truth word whose
time lies within ``--tolerance-ms`` of it; it is *correct* when that word has the same label and was not
matched before, *wrong* otherwise, and a *false positive* when no truth word is that close. *Matched* counts
the truth words hit by any detection. All four are given as percentages of the truth words. Times are word
centres (the middle of ``start``-``end``), since detections carry a span. Two deliberate differences from
TensorFlow: truth words the model does not know (its ``_unknown_`` words) take part in the matching (a
detection on one is wrong) but not in the denominator, because the detector never emits ``_unknown_``; and
matched counts each truth word once. Separately, every detection on audio without command words (``--noise-only``)
is a false accept, reported per hour.

:func:`tune` searches the detector settings on a development stream (``kws evaluate-stream --tune``).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from pipeline.audio import SAMPLE_RATE, read_audio, resample
from pipeline.arguments import add_detector_arguments, detector_from_args, expand_inputs
from pipeline.console import console, print_error
from pipeline.data.speech_commands import is_word
from pipeline.data.streams import TruthWord, read_truth, truth_path
from pipeline.errors import AudioError
from pipeline.decision import Detection, Settings, decide
from pipeline.streaming import Classifier, is_streaming, offline_scores, windowing_of
from pipeline.transcribe import transcribe_source

TOLERANCE_MS = 500.0

# grid of tune(): thresholds x smoothing spans x suppression times, at each stride
TUNE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TUNE_SMOOTH_MS = (0.0, 100.0, 200.0, 300.0, 500.0)  # 0: one window, no smoothing
TUNE_SUPPRESSION_MS = (0.0, 250.0, 500.0, 1000.0)
TUNE_STRIDES_MS = (100.0, 200.0, 300.0, 400.0)
TUNE_STREAM_STRIDES_MS = (10.0, 20.0, 40.0)  # a streaming model's windows cost a mean, not a model run
TUNE_SLACK = 0.02  # objectives this close to the best (share of the truth words) are ties
TUNE_SHOWN = 5  # settings printed by kws evaluate-stream --tune


def _centre(item: TruthWord | Detection) -> float:
    return (item.start + item.end) / 2


@dataclass(frozen=True)
class StreamStats:
    """Counts of a scored stream (see the module docstring)."""

    ground_truth: int  # truth words the model knows
    matched: int
    correct: int
    wrong: int
    false_positives: int
    seconds: float

    def percent(self, count: int) -> float:
        """``count`` as a percentage of the truth words."""
        return 100.0 * count / self.ground_truth if self.ground_truth else float("nan")

    @property
    def false_accepts_per_hour(self) -> float:
        """False positives per hour of stream."""
        return self.false_positives * 3600.0 / self.seconds if self.seconds else float("nan")


def score_stream(
    found: list[Detection], truth: list[TruthWord], vocabulary: set[str], seconds: float, tolerance_s: float
) -> StreamStats:
    """Match detections to truth words as TensorFlow's ``test_streaming_accuracy`` does (module docstring)."""
    events = sorted(truth, key=_centre)
    centres = [_centre(w) for w in events]
    matched: set[int] = set()
    correct = wrong = false_positives = 0
    for detection in sorted(found, key=_centre):
        t = _centre(detection)
        j = bisect.bisect_left(centres, t - tolerance_s)
        if j == len(events) or centres[j] > t + tolerance_s:
            false_positives += 1
            continue
        if events[j].word == detection.word and j not in matched:
            correct += 1
        else:
            wrong += 1
        matched.add(j)
    targets = {i for i, w in enumerate(events) if w.word in vocabulary}
    return StreamStats(len(targets), len(matched & targets), correct, wrong, false_positives, seconds)


def vocabulary(model: Classifier) -> set[str]:
    """The words a model can emit (its labels less ``_silence_`` and ``_unknown_``)."""
    return set(filter(is_word, model.labels))


def tune(
    model: Classifier,
    audio: np.ndarray,
    truth: list[TruthWord],
    sample_rate: int = SAMPLE_RATE,
    tolerance_s: float = TOLERANCE_MS / 1000,
    strides_ms: Sequence[float] | None = None,
    thresholds: Sequence[float] = TUNE_THRESHOLDS,
    smooth_ms: Sequence[float] = TUNE_SMOOTH_MS,
    suppression_ms: Sequence[float] = TUNE_SUPPRESSION_MS,
    hold_ms: float | None = None,
) -> list[tuple[Settings, StreamStats]]:
    """Score every setting of the grid on a development stream; best first.

    The strides default to ``TUNE_STRIDES_MS``, or ``TUNE_STREAM_STRIDES_MS`` for a streaming model. The model
    runs once per stride (the offline reference, equal to the streaming engine); every threshold,
    smoothing span and suppression time replays the decision rule (with ``hold_ms``) on those outputs. The objective is
    ``correct - wrong - false positives``. Settings within ``TUNE_SLACK`` (a share of the truth words) of the
    best objective count as equally good, and among them the most conservative come first: the higher
    threshold, then the longer suppression, the longer smoothing and the longer stride (cheaper). This guards
    against false accepts that a short development stream may not show. The rest follow by objective.
    """
    wave = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, model.sample_rate)
    seconds, words, labels = len(wave) / model.sample_rate, vocabulary(model), list(model.labels)
    results = []
    for stride in strides_ms or (TUNE_STREAM_STRIDES_MS if is_streaming(model) else TUNE_STRIDES_MS):
        windowing = windowing_of(model, stride)
        grid = [Settings(t, stride, s, q, hold_ms)
                for t, s, q in itertools.product(thresholds, smooth_ms, suppression_ms)]  # fmt: skip
        tail = max(s.smooth_windows for s in grid) - 1
        probs = offline_scores(model, wave, stride, tail)
        base = len(probs) - tail
        for settings in grid:
            found = decide(probs[: base + settings.smooth_windows - 1], labels, settings, windowing)
            results.append((settings, score_stream(found, truth, words, seconds, tolerance_s)))

    def objective(stats: StreamStats) -> int:
        return stats.correct - stats.wrong - stats.false_positives

    cutoff = max(objective(r) for _, r in results) - TUNE_SLACK * results[0][1].ground_truth

    def rank(item: tuple[Settings, StreamStats]) -> tuple:
        s, r = item
        if objective(r) >= cutoff:
            return (1, s.threshold, s.suppression_ms, s.smooth_ms, s.stride_ms, objective(r))
        return (0, objective(r), 0.0, 0.0, 0.0, 0)

    return sorted(results, key=rank, reverse=True)


def evaluate_stream_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws evaluate-stream``."""
    parser = argparse.ArgumentParser(
        prog="kws evaluate-stream",
        description="Score streaming detections against a truth CSV (TensorFlow test_streaming_accuracy rates).",
    )
    parser.add_argument("stream", help="stream audio file (from kws make-stream)")
    parser.add_argument("truth", nargs="?", help="truth CSV word,start,end (default: the stream's name with .csv)")
    parser.add_argument("--tolerance-ms", type=float, default=TOLERANCE_MS,
                        help=f"largest distance between a detection's and a word's centre (default: {TOLERANCE_MS:g})")
    parser.add_argument("--noise-only", nargs="+", metavar="AUDIO",
                        help="files or folders of audio without command words: report false accepts per hour")
    add_detector_arguments(parser)
    parser.add_argument("--tune", action="store_true",
                        help="search threshold, smoothing and suppression on this stream and print the best settings")
    return parser


def _stats_table(rows: list[tuple[Settings, StreamStats]], title: str) -> Table:
    """Rates as percentages of the truth words; settings as threshold, stride, smoothing, suppression (ms)."""
    table = Table(title=f"{title}, {rows[0][1].ground_truth} command words")
    for column in ("thr stride smooth supp", "matched", "correct", "wrong", "false pos.", "FA/hour"):
        table.add_column(column, justify="right")
    for s, r in rows:
        rates = (f"{r.percent(c):.1f}%" for c in (r.matched, r.correct, r.wrong, r.false_positives))
        settings = f"{s.threshold:g} {s.stride_ms:g} {s.smooth_ms:g} {s.suppression_ms:g}"
        table.add_row(settings, *rates, f"{r.false_accepts_per_hour:.1f}")
    return table


def evaluate_stream_main(argv: list[str]) -> int:
    """Entry point of ``kws evaluate-stream``; returns the exit status."""
    args = evaluate_stream_parser().parse_args(argv)
    truth = read_truth(args.truth or truth_path(args.stream))
    detector = detector_from_args(args)
    model, tolerance = detector.model, args.tolerance_ms / 1000
    if args.tune:
        ranked = tune(model, read_audio(args.stream, model.sample_rate), truth, model.sample_rate, tolerance)
        console.print(_stats_table(ranked[:TUNE_SHOWN], f"{args.stream}: best detector settings"))
        return 0
    result = transcribe_source(detector, args.stream, args.chunk_samples)
    stats = score_stream(result.words, truth, vocabulary(model), result.seconds, tolerance)
    title = f"{args.stream}: {result.seconds / 60:.1f} min, tolerance {args.tolerance_ms:g} ms"
    console.print(_stats_table([(detector.settings, stats)], title))
    if args.noise_only:
        sources, errors = expand_inputs(args.noise_only)
        false_accepts, seconds = 0, 0.0
        for source in sources:
            try:
                noise = transcribe_source(detector, source, args.chunk_samples)
            except AudioError as err:
                errors.append(str(err))
                continue
            false_accepts, seconds = false_accepts + len(noise.words), seconds + noise.seconds
        for message in errors:
            print_error(message)
        if seconds:
            console.print(f"noise only: {false_accepts} false accepts in {seconds / 60:.1f} min "
                          f"= {false_accepts * 3600 / seconds:.1f} per hour", highlight=False)  # fmt: skip
        if errors:
            return 1
    return 0
