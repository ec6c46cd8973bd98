"""Scoring streaming detections against a stream's truth: ``kws evaluate-stream``, the DET curve and the tuner.

Streams and their truth come from ``kws make-stream`` (:mod:`pipeline.data.streams`). Every detection, in time
order, is matched to the earliest truth word whose time lies within ``--tolerance-ms`` of it; it is *correct*
when that word has the same label and was not matched before, *wrong* otherwise, and a *false positive* when no
truth word is that close (TensorFlow's ``test_streaming_accuracy``). *Matched* counts the truth words hit by any
detection. Times are word centres (the middle of ``start``-``end``). Truth words the model does not know (its
``_unknown_`` words) take part in the matching (a detection on one is wrong) but not in the denominator.

**One definition of a false accept** (:attr:`StreamStats.false_accepts`): every detection that is not a correct
command word, that is the wrong ones (another word, a non-command word, a second detection of one word) and the
false positives (far from any word); per hour of the audio scored. On audio without command words (negatives,
``--negatives``) every detection is one. The DET curve (:func:`det_curve`) plots the share of command words
found correctly against false accepts per hour, threshold by threshold.

The model's window outputs are computed once per stream and stride (:func:`score_windows`, the offline
reference, equal to the streaming engine); every setting of a sweep replays the decision rule on them.
:func:`tune` searches the detector settings on development audio (``kws evaluate-stream --tune``), for the most
words found within a false-accept budget (``--fa-budget``) when one is given.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.table import Table

from pipeline.arguments import add_detector_arguments, detector_from_args, expand_inputs
from pipeline.console import console, print_error
from pipeline.data.negatives import file_split, negative_files
from pipeline.data.speech_commands import SPLITS, is_word
from pipeline.data.streams import TruthWord, read_truth, truth_path
from pipeline.errors import AudioError, KWSError
from pipeline.runtime.audio import SAMPLE_RATE, read_audio, resample
from pipeline.runtime.decision import Detection, Settings, decide
from pipeline.runtime.spotter import transcribe_source
from pipeline.runtime.streaming import Classifier, is_streaming, offline_scores, step_ms, windowing_of

TOLERANCE_MS = 500.0

# grid of tune(): thresholds x smoothing spans x suppression times x patience, at each stride
TUNE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
TUNE_SMOOTH_MS = (0.0, 100.0, 200.0, 300.0, 500.0)  # 0: one window, no smoothing
TUNE_SUPPRESSION_MS = (0.0, 250.0, 500.0, 1000.0)
TUNE_PATIENCE = (1, 2, 3)
TUNE_STRIDES_MS = (100.0, 200.0, 300.0, 400.0)
TUNE_STREAM_STEPS = (1, 2, 4)  # a streaming model's strides, in its steps: its windows cost a mean, not a model run
TUNE_SLACK = 0.02  # objectives this close to the best (share of the truth words) are ties
TUNE_SHOWN = 5  # settings printed by kws evaluate-stream --tune
DET_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)


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
    def false_accepts(self) -> int:
        """Every detection that is not a correct command word: the wrong ones and the false positives."""
        return self.wrong + self.false_positives

    @property
    def false_accepts_per_hour(self) -> float:
        """False accepts per hour of the audio scored."""
        return self.false_accepts * 3600.0 / self.seconds if self.seconds else float("nan")

    def __add__(self, other: StreamStats) -> StreamStats:
        return StreamStats(*(a + b for a, b in zip(self._counts(), other._counts())))

    def _counts(self) -> tuple[float, ...]:
        return (self.ground_truth, self.matched, self.correct, self.wrong, self.false_positives, self.seconds)


def score_stream(
    found: list[Detection], truth: list[TruthWord], vocabulary: set[str], seconds: float, tolerance_s: float
) -> StreamStats:
    """Match detections to truth words as TensorFlow's ``test_streaming_accuracy`` does (module docstring).
    With no truth (audio without command words) every detection is a false positive."""
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


@dataclass
class ScoredAudio:
    """One stream's window outputs at one stride, for replaying the decision rule (:func:`replay`).

    ``probs`` holds every window of the audio padded as the engine pads it, plus ``tail`` more strides, so that
    any smoothing span up to ``tail + 1`` windows replays as the engine would run.
    """

    name: str
    probs: np.ndarray
    truth: list[TruthWord]
    seconds: float
    stride_ms: float
    tail: int
    clip: bool  # one window at most


def score_windows(
    model: Classifier, audio: np.ndarray, stride_ms: float, tail: int, truth: list[TruthWord] | None = None,
    sample_rate: int = SAMPLE_RATE, name: str = "",
) -> ScoredAudio:  # fmt: skip
    """The model's window outputs of ``audio`` at ``stride_ms`` (:func:`~pipeline.runtime.streaming.offline_scores`)."""
    wave = resample(np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, model.sample_rate)
    w = windowing_of(model, stride_ms)
    probs = offline_scores(model, wave, stride_ms, tail)
    return ScoredAudio(name, probs, list(truth or []), len(wave) / model.sample_rate, stride_ms, tail,
                       len(wave) <= w.samples)  # fmt: skip


def replay(
    model: Classifier, scored: ScoredAudio, settings: Settings, tolerance_s: float = TOLERANCE_MS / 1000
) -> StreamStats:  # fmt: skip
    """The engine's statistics on ``scored`` with ``settings`` (whose stride must be the scores')."""
    if settings.smooth_windows - 1 > scored.tail or settings.stride_ms != scored.stride_ms:
        raise ValueError("the scores were computed at another stride or for a shorter smoothing")
    rows = len(scored.probs) - scored.tail + settings.smooth_windows - 1
    found = decide(scored.probs[:rows], list(model.labels), settings, windowing_of(model, settings.stride_ms),
                   scored.clip)  # fmt: skip
    return score_stream(found, scored.truth, vocabulary(model), scored.seconds, tolerance_s)


@dataclass
class DetPoint:
    """One threshold of a DET curve: the statistics of each positive stream and each negative set."""

    settings: Settings
    positives: dict[str, StreamStats] = field(default_factory=dict)
    negatives: dict[str, StreamStats] = field(default_factory=dict)

    @property
    def found(self) -> float:
        """Share of the command words of every positive stream found correctly, in percent."""
        total = sum(self.positives.values(), StreamStats(0, 0, 0, 0, 0, 0.0))
        return total.percent(total.correct)

    @property
    def false_accepts_per_hour(self) -> float:
        """False accepts per hour over every negative set (the positive streams' own when there is none)."""
        sets = self.negatives or self.positives
        return sum(sets.values(), StreamStats(0, 0, 0, 0, 0, 0.0)).false_accepts_per_hour


def det_curve(
    model: Classifier, settings: Settings, positives: Sequence[ScoredAudio], negatives: Sequence[ScoredAudio] = (),
    thresholds: Sequence[float] = DET_THRESHOLDS, tolerance_s: float = TOLERANCE_MS / 1000,
) -> list[DetPoint]:  # fmt: skip
    """The DET curve of ``settings`` at each of ``thresholds``: commands found and false accepts per hour."""
    points = []
    for t in thresholds:
        s = replace(settings, threshold=t)
        points.append(DetPoint(s, {a.name: replay(model, a, s, tolerance_s) for a in positives},
                               {a.name: replay(model, a, s, tolerance_s) for a in negatives}))  # fmt: skip
    return points


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
    patience: Sequence[int] = (1,),
    negatives: Sequence[np.ndarray] = (),
    fa_budget: float | None = None,
) -> list[tuple[Settings, StreamStats]]:
    """Score every setting of the grid on a development stream (and ``negatives``, audio without command words);
    best first. Each result's statistics pool the stream and the negatives.

    The strides default to ``TUNE_STRIDES_MS``, or ``TUNE_STREAM_STEPS`` steps of a streaming model. The model
    runs once per stride and audio; every threshold, smoothing span, suppression time and patience replays the
    decision rule (with ``hold_ms``) on those outputs.

    Without ``fa_budget`` the objective is ``correct - false accepts``; settings within ``TUNE_SLACK`` (a share
    of the truth words) of the best count as equally good, and among them the most conservative come first: the
    higher threshold, then the longer suppression, the longer smoothing, the higher patience and the longer
    stride (cheaper). With ``fa_budget`` (false accepts per hour over all the audio), the settings within the
    budget come first, most correct words first (ties broken the same conservative way); the rest follow, fewest
    false accepts first.
    """
    results = []
    strides = tuple(k * step_ms(model) for k in TUNE_STREAM_STEPS) if is_streaming(model) else TUNE_STRIDES_MS
    for stride in strides_ms or strides:
        grid = [Settings(t, stride, s, q, hold_ms, p)
                for t, s, q, p in itertools.product(thresholds, smooth_ms, suppression_ms, patience)]  # fmt: skip
        tail = max(s.smooth_windows for s in grid) - 1
        scored = [score_windows(model, audio, stride, tail, truth, sample_rate)]
        if len(negatives):  # end to end: one replay for all of them
            joined = np.concatenate([np.asarray(n, np.float32).reshape(-1) for n in negatives])
            scored.append(score_windows(model, joined, stride, tail, None, sample_rate))
        for settings in grid:
            results.append((settings, sum((replay(model, a, settings, tolerance_s) for a in scored[1:]),
                                          replay(model, scored[0], settings, tolerance_s))))  # fmt: skip

    def conservative(s: Settings) -> tuple:
        return (s.threshold, s.suppression_ms, s.smooth_ms, s.patience, s.stride_ms)

    if fa_budget is not None:

        def budgeted(item: tuple[Settings, StreamStats]) -> tuple:
            s, r = item
            if r.false_accepts_per_hour <= fa_budget:
                return (1, r.correct, *conservative(s))
            return (0, -r.false_accepts_per_hour, r.correct, 0.0, 0.0, 0, 0.0)

        return sorted(results, key=budgeted, reverse=True)

    def objective(stats: StreamStats) -> int:
        return stats.correct - stats.false_accepts

    cutoff = max(objective(r) for _, r in results) - TUNE_SLACK * results[0][1].ground_truth

    def rank(item: tuple[Settings, StreamStats]) -> tuple:
        s, r = item
        if objective(r) >= cutoff:
            return (1, *conservative(s), objective(r))
        return (0, objective(r), 0.0, 0.0, 0, 0.0, 0)

    return sorted(results, key=rank, reverse=True)


def evaluate_stream_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws evaluate-stream``."""
    parser = argparse.ArgumentParser(
        prog="kws evaluate-stream",
        description="Score streaming detections against a truth CSV (TensorFlow test_streaming_accuracy rates), "
        "draw the DET curve, or tune the detector's operating point.",
    )
    parser.add_argument("stream", help="stream audio file (from kws make-stream)")
    parser.add_argument("truth", nargs="?", help="truth CSV word,start,end (default: the stream's name with .csv)")
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        default=TOLERANCE_MS,
        help=f"largest distance between a detection's and a word's centre (default: {TOLERANCE_MS:g})",
    )
    parser.add_argument("--negatives", "--noise-only", nargs="+", metavar="AUDIO", dest="negatives",
                        help="files or folders of audio without command words (speech or noise): every detection "
                        "there is a false accept, reported per hour; --tune and --det count them too")  # fmt: skip
    parser.add_argument("--negatives-split", choices=(*SPLITS, "all"), default="all",
                        help="of the --negatives folders, only the files of this split (their list files, else the "
                        "speaker hash, as kws fit --data.negatives splits them), e.g. validation to tune on "
                        "(default: all)")  # fmt: skip
    add_detector_arguments(parser)
    parser.add_argument(
        "--det",
        nargs="?",
        const="",
        metavar="PNG",
        help="sweep the threshold (the other settings as given) and print the DET curve: command "
        "words found against false accepts per hour; with a file name, also draw it as a PNG",
    )
    parser.add_argument("--thresholds", help="comma-separated thresholds of --det (default: "
                        f"{','.join(f'{t:g}' for t in DET_THRESHOLDS)})")  # fmt: skip
    parser.add_argument(
        "--tune",
        action="store_true",
        help="search threshold, stride, smoothing, suppression and patience on this stream (and the "
        "--negatives) and print the best settings; --stride-ms and --hold-ms restrict the search",
    )
    parser.add_argument(
        "--fa-budget",
        type=float,
        metavar="N",
        help="with --tune: the most words found with at most N false accepts per hour over the "
        "stream and the --negatives (default: the best words-found-minus-false-accepts balance)",
    )
    parser.add_argument("--save", action="store_true",
                        help="with --tune: write the best settings into the --ckpt checkpoint or --model export as "
                        "its operating point, which kws transcribe and kws live then use")  # fmt: skip
    return parser


def _stats_table(rows: list[tuple[Settings, StreamStats]], title: str) -> Table:
    """Rates as percentages of the truth words; settings as threshold, stride, smoothing, suppression (ms) and
    patience (windows)."""
    table = Table(title=f"{title}, {rows[0][1].ground_truth} command words")
    for column in ("thr stride smooth supp pat", "matched", "correct", "wrong", "false pos.", "FA/hour"):
        table.add_column(column, justify="right")
    for s, r in rows:
        rates = (f"{r.percent(c):.1f}%" for c in (r.matched, r.correct, r.wrong, r.false_positives))
        settings = f"{s.threshold:g} {s.stride_ms:g} {s.smooth_ms:g} {s.suppression_ms:g} {s.patience}"
        table.add_row(settings, *rates, f"{r.false_accepts_per_hour:.1f}")
    return table


def det_table(points: list[DetPoint], title: str) -> Table:
    """The DET curve as a table: per threshold, command words found and false accepts per hour of each set."""
    table = Table(title=title)
    table.add_column("threshold", justify="right")
    table.add_column("found", justify="right")
    names = list(points[0].positives) + list(points[0].negatives)
    for name in names:
        table.add_column(f"FA/h {name}", justify="right")
    for point in points:
        sets = {**point.positives, **point.negatives}
        table.add_row(f"{point.settings.threshold:g}", f"{point.found:.1f}%",
                      *(f"{sets[n].false_accepts_per_hour:.1f}" for n in names))  # fmt: skip
    return table


def plot_det(curves: dict[str, list[DetPoint]], out: str, title: str, marks: dict[str, DetPoint] | None = None) -> None:
    """Draw DET curves (one per name) as a PNG: share of command words found against false accepts per hour;
    ``marks``: a point to mark on the curve of the same name (its operating point).

    Raises:
        KWSError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise KWSError("drawing the DET curve needs matplotlib (pip install matplotlib); the table above has "
                       "the same figures") from None  # fmt: skip
    from pipeline.files import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (name, points) in enumerate(curves.items()):
        x = [max(p.false_accepts_per_hour, 0.1) for p in points]
        ax.plot(x, [p.found for p in points], "o-", markersize=3, label=name, color=f"C{i}")
        if marks and name in marks:
            mark = marks[name]
            ax.plot([max(mark.false_accepts_per_hour, 0.1)], [mark.found], "*", markersize=14, color=f"C{i}",
                    markeredgecolor="black", label=f"{name}: its operating point")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour (0 drawn at 0.1)")
    ax.set_ylabel("command words found (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def read_negatives(
    inputs: list[str], sample_rate: int, split: str = "all"
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:  # fmt: skip
    """The audio of the files and folders ``inputs`` name, at ``sample_rate``, and one sentence per bad input;
    ``split``: of a folder, only the files of that split (``data.negatives``' rule: its list files, else the
    speaker hash)."""
    sources, errors = expand_inputs(inputs, stdin=False)
    if split != "all":
        keep = set()
        for item in inputs:
            if Path(item).is_dir():
                files, lists = negative_files(Path(item))
                keep |= {str(p) for p in files if file_split(Path(item), p, lists) == split}
            else:
                keep.add(item)
        sources = [s for s in sources if s in keep or Path(s).is_file() and s in inputs]
        if not sources:
            errors.append(f"the --negatives hold no audio of the {split} split")
    audio = []
    for source in sources:
        try:
            audio.append((source, read_audio(source, sample_rate)))
        except AudioError as err:
            errors.append(str(err))
    return audio, errors


def save_point(args: argparse.Namespace, settings: Settings) -> str:
    """Write ``settings`` into the model that ``--ckpt`` or ``--model`` names; return its path.

    Raises:
        KWSError: no such file was given (a bundled model is not rewritten), or the training stack is missing.
    """
    from pipeline.errors import TRAINING_STACK
    from pipeline.runtime.bundled import resolve_model

    path = args.model or (resolve_model(args.ckpt)[0] if args.ckpt else None)
    if path is None or (args.ckpt and resolve_model(args.ckpt)[1] is not None):
        raise KWSError("--save writes into the model file given with --ckpt FILE or --model FILE, not into a "
                       "bundled model")  # fmt: skip
    try:
        if args.model:
            from pipeline.train.export import save_export_operating_point as save
        else:
            from pipeline.train.model import save_operating_point as save
    except ImportError:
        raise KWSError(f"--save needs the training stack ({TRAINING_STACK}) to rewrite the model file") from None
    save(path, settings.to_dict())
    return path


def _negative_stats(detector, negatives: list[tuple[str, np.ndarray]], tolerance: float) -> StreamStats:
    total = StreamStats(0, 0, 0, 0, 0, 0.0)
    for _, audio in negatives:
        found = detector.push(audio, detector.model.sample_rate) + detector.flush()
        total += score_stream(found, [], set(), len(audio) / detector.model.sample_rate, tolerance)
    return total


def evaluate_stream_main(argv: list[str]) -> int:
    """Entry point of ``kws evaluate-stream``; returns the exit status."""
    parser = evaluate_stream_parser()
    args = parser.parse_args(argv)
    if (args.fa_budget is not None or args.save) and not args.tune:
        raise KWSError("--fa-budget and --save go with --tune")
    if args.fa_budget is not None and args.fa_budget < 0:
        raise KWSError(f"--fa-budget cannot be negative, not {args.fa_budget:g}")
    truth = read_truth(args.truth or truth_path(args.stream))
    detector = detector_from_args(args)
    model, tolerance = detector.model, args.tolerance_ms / 1000
    negatives, errors = [], []
    if args.negatives:
        negatives, errors = read_negatives(args.negatives, model.sample_rate, args.negatives_split)
    for message in errors:
        print_error(message)
    if args.negatives and not negatives:
        return 1
    stream = read_audio(args.stream, model.sample_rate)
    if args.tune:
        ranked = tune(model, stream, truth, model.sample_rate, tolerance,
                      (args.stride_ms,) if args.stride_ms else None, hold_ms=args.hold_ms,
                      patience=(args.patience,) if args.patience else TUNE_PATIENCE,
                      negatives=[a for _, a in negatives], fa_budget=args.fa_budget)  # fmt: skip
        what = f"within {args.fa_budget:g} false accepts per hour" if args.fa_budget is not None else "best balance"
        title = f"{args.stream}{' + negatives' if negatives else ''}: best detector settings ({what})"
        console.print(_stats_table(ranked[:TUNE_SHOWN], title))
        best, stats = ranked[0]
        if args.fa_budget is not None and stats.false_accepts_per_hour > args.fa_budget:
            console.print(f"no setting keeps within {args.fa_budget:g} false accepts per hour: the first row has "
                          "the fewest", highlight=False)  # fmt: skip
        if args.save:
            console.print(f"wrote the operating point ({best.describe()}) into {save_point(args, best)}",
                          highlight=False)  # fmt: skip
        return 1 if errors else 0
    if args.det is not None:
        try:
            thresholds = [float(t) for t in args.thresholds.split(",")] if args.thresholds else DET_THRESHOLDS
        except ValueError:
            raise KWSError(f"--thresholds must be comma-separated numbers, not {args.thresholds!r}") from None
        s = replace(detector.settings, threshold=min(thresholds))  # any threshold: the sweep sets each
        tail = s.smooth_windows - 1
        positives = [score_windows(model, stream, s.stride_ms, tail, truth, model.sample_rate, "stream")]
        scored = [score_windows(model, np.concatenate([a for _, a in negatives]), s.stride_ms, tail, None,
                                model.sample_rate, "negatives")] if negatives else []  # fmt: skip
        points = det_curve(model, s, positives, scored, thresholds, tolerance)
        title = f"{args.stream}: DET curve ({s.describe().split(', ', 1)[1]})"
        console.print(det_table(points, title))
        if args.det:
            plot_det({"engine": points}, args.det, title)
            console.print(f"wrote {args.det}", highlight=False)
        return 1 if errors else 0
    result = transcribe_source(detector, args.stream, args.chunk_samples)
    stats = score_stream(result.words, truth, vocabulary(model), result.seconds, tolerance)
    title = f"{args.stream}: {result.seconds / 60:.1f} min, tolerance {args.tolerance_ms:g} ms"
    console.print(_stats_table([(detector.settings, stats)], title))
    if negatives:
        total = _negative_stats(detector, negatives, tolerance)
        console.print(f"negatives: {total.false_accepts} false accepts in {total.seconds / 60:.1f} min "
                      f"= {total.false_accepts_per_hour:.1f} per hour", highlight=False)  # fmt: skip
    return 1 if errors else 0
