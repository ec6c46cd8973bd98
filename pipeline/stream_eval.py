"""Long test streams and their scoring: ``kws make-stream`` and ``kws evaluate-stream``.

``make-stream`` lays words from a Speech Commands-layout folder end to end over background noise, 1-3 s
apart, and writes the truth next to the audio as ``<stream>.csv`` (``word,start,end`` in seconds, the
extent of each word's voiced part, found from its energy).

``evaluate-stream`` scores the streaming detector against the truth with the statistics of TensorFlow's
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
import csv
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from pipeline.audio import AUDIO_SUFFIXES, SAMPLE_RATE, AudioError, load_audio, resample, save_audio
from pipeline.console import console
from pipeline.data.speech_commands import NOISE_DIR, SILENCE, SPLITS, scan
from pipeline.errors import KWSError
from pipeline.files import write_text
from pipeline.streaming import Classifier, Detection, Settings, Windowing, decide, offline_scores
from pipeline.transcribe import (
    add_detector_arguments,
    detector_from_args,
    expand_inputs,
    print_error,
    transcribe_source,
)

MINUTES = 10.0  # default stream length
GAP_SECONDS = (1.0, 3.0)  # silence between one word's end and the next word's start, uniform
SNR_DB = 10.0  # default speech-to-noise ratio: median word RMS over noise RMS
ACTIVE_DB = -25.0  # a 10 ms frame belongs to the word when its RMS is within this of the loudest frame
MARGIN_SECONDS = 0.1  # clip audio kept around the voiced part, faded in and out
FADE_SECONDS = 0.02
NOISE_SEGMENT_SECONDS = 5.0  # background built from random stretches of this length, cross-faded
PEAK = 0.99  # the stream is scaled down when the mix would exceed this
TOLERANCE_MS = 500.0
TRUTH_HEADER = ("word", "start", "end")

# grid of tune(): thresholds x smoothing spans x suppression times, at each stride
TUNE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TUNE_SMOOTH_MS = (100.0, 200.0, 300.0, 500.0)
TUNE_SUPPRESSION_MS = (0.0, 250.0, 500.0, 1000.0)
TUNE_STRIDES_MS = (100.0, 200.0, 300.0, 400.0)
TUNE_SLACK = 0.02  # objectives this close to the best (share of the truth words) are ties
TUNE_SHOWN = 5  # settings printed by kws evaluate-stream --tune


@dataclass(frozen=True)
class TruthWord:
    """One spoken word of a stream, times in seconds."""

    word: str
    start: float
    end: float


def _centre(item: TruthWord | Detection) -> float:
    return (item.start + item.end) / 2


def word_extent(clip: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """``[start, end)`` samples of the voiced part of a clip: its 10 ms frames within ``ACTIVE_DB`` of the peak."""
    hop = sample_rate // 100
    n = max(1, len(clip) // hop)
    rms = np.sqrt(np.mean(np.square(clip[: n * hop].reshape(n, hop).astype(np.float64)), axis=1) + 1e-20)
    active = np.flatnonzero(20 * np.log10(rms / rms.max()) >= ACTIVE_DB)
    return int(active[0]) * hop, min(len(clip), (int(active[-1]) + 1) * hop)


def _noise_track(noises: list[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of random stretches of the noise recordings, cross-faded, scaled to unit RMS."""
    segment = int(NOISE_SEGMENT_SECONDS * SAMPLE_RATE)
    fade = int(FADE_SECONDS * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    track = np.zeros(length + segment + fade, dtype=np.float32)
    for pos in range(0, length, segment):
        source = noises[rng.integers(len(noises))]
        start = rng.integers(0, max(1, len(source) - segment - fade))
        piece = np.resize(source[start : start + segment + fade], segment + fade).copy()
        piece[:fade] *= ramp
        piece[-fade:] *= ramp[::-1]
        track[pos : pos + segment + fade] += piece
    track = track[:length]
    return track / max(float(np.sqrt(np.mean(np.square(track, dtype=np.float64)))), 1e-12)


def make_stream(
    source: str | Path,
    noise_dir: str | Path | None = None,
    minutes: float = MINUTES,
    snr_db: float = SNR_DB,
    noise_level: float | None = None,
    seed: int = 0,
    words: Sequence[str] | None = None,
    split: str = "test",
) -> tuple[np.ndarray, list[TruthWord]]:
    """Build a stream of words over noise; return the 16 kHz audio and its truth.

    Args:
        source: A Speech Commands-layout folder.
        noise_dir: Folder of background recordings (default: ``<source>/_background_noise_``).
        minutes: Stream length.
        snr_db: Median word RMS over noise RMS, in dB (ignored when ``noise_level`` is given).
        noise_level: Absolute RMS of the noise instead.
        seed: Random seed (word order, gaps, noise stretches).
        words: Only these words (default: every word of the folder).
        split: Clips of this split (``train``, ``validation``, ``test``) or ``all``.

    Raises:
        KWSError: no usable clips or noise.
    """
    corpus = scan(source)
    wanted = set(words) if words else None
    clips = [
        c for c in corpus.clips
        if c.word != SILENCE and (wanted is None or c.word in wanted)
        and (split == "all" or corpus.layout == "archive" or corpus.split_of(c, 10.0, 10.0) == split)
    ]  # fmt: skip
    if not clips:
        raise KWSError(f"{source} holds no clips of the requested words in the {split} split")
    noise_dir = Path(noise_dir) if noise_dir else Path(source) / NOISE_DIR
    noise_files = sorted(p for p in noise_dir.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not noise_files:
        raise KWSError(f"no background-noise audio files in {noise_dir}: give a folder of recordings with --noise")
    noises = [n for n in (load_audio(p).numpy() for p in noise_files) if len(n) > 2 * FADE_SECONDS * SAMPLE_RATE]
    if not noises:
        raise KWSError(f"the background-noise files in {noise_dir} are all shorter than {2 * FADE_SECONDS:g} s")
    rng = np.random.default_rng(seed)
    length = int(minutes * 60 * SAMPLE_RATE)
    speech = np.zeros(length, dtype=np.float32)
    margin, fade = int(MARGIN_SECONDS * SAMPLE_RATE), int(FADE_SECONDS * SAMPLE_RATE)
    truth: list[TruthWord] = []
    levels: list[float] = []
    t = int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
    while True:
        clip = clips[rng.integers(len(clips))]
        audio = load_audio(clip.path).numpy()
        a, b = word_extent(audio)
        lo, hi = max(0, a - margin), min(len(audio), b + margin)
        if t - (a - lo) < 0 or t + (hi - a) > length:
            break
        piece = audio[lo:hi].copy()
        ramp = np.linspace(0.0, 1.0, min(fade, len(piece) // 2), dtype=np.float32)
        piece[: len(ramp)] *= ramp
        piece[len(piece) - len(ramp) :] *= ramp[::-1]
        speech[t - (a - lo) : t + (hi - a)] += piece
        truth.append(TruthWord(clip.word, t / SAMPLE_RATE, (t + b - a) / SAMPLE_RATE))
        levels.append(float(np.sqrt(np.mean(np.square(audio[a:b], dtype=np.float64)))))
        t += (b - a) + int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
    if noise_level is None:
        noise_level = (float(np.median(levels)) if levels else 0.1) / 10 ** (snr_db / 20)
    mix = speech + _noise_track(noises, length, rng) * np.float32(noise_level)
    peak = float(np.abs(mix).max()) if length else 0.0
    return (mix * (PEAK / peak) if peak > PEAK else mix).astype(np.float32), truth


def truth_path(stream: str | Path) -> Path:
    """Where the truth of a stream file lives: the same name with ``.csv``."""
    return Path(stream).with_suffix(".csv")


def write_truth(path: str | Path, truth: list[TruthWord]) -> None:
    """Write ``word,start,end`` rows (with a header) atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRUTH_HEADER)
    writer.writerows([w.word, f"{w.start:.3f}", f"{w.end:.3f}"] for w in truth)
    write_text(path, out.getvalue())


def read_truth(path: str | Path) -> list[TruthWord]:
    """Read a ``word,start,end`` CSV (header optional).

    Raises:
        KWSError: the file is missing or a row is not ``word,start,end`` with times in seconds.
    """
    try:
        rows = list(csv.reader(Path(path).read_text().splitlines()))
    except OSError as err:
        raise KWSError(f"cannot read the truth file {path} ({err.strerror})") from None
    except UnicodeDecodeError:
        raise KWSError(f"{path} is not a text file of word,start,end rows") from None
    truth = []
    for n, row in enumerate(rows, start=1):
        if not row or (n == 1 and tuple(c.strip() for c in row) == TRUTH_HEADER):
            continue
        try:
            word, start, end = row[0].strip(), float(row[1]), float(row[2])
        except (IndexError, ValueError):
            raise KWSError(f"{path}: line {n} is not 'word,start,end' with times in seconds") from None
        truth.append(TruthWord(word, start, end))
    return sorted(truth, key=_centre)


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


def vocabulary(module: Classifier) -> set[str]:
    """The words a model can emit (its labels less ``_silence_`` and ``_unknown_``)."""
    return {label for label in module.labels if not label.startswith("_")}


def tune(
    module: Classifier,
    audio: np.ndarray | torch.Tensor,
    truth: list[TruthWord],
    sample_rate: int = SAMPLE_RATE,
    tolerance_s: float = TOLERANCE_MS / 1000,
    strides_ms: Sequence[float] = TUNE_STRIDES_MS,
    thresholds: Sequence[float] = TUNE_THRESHOLDS,
    smooth_ms: Sequence[float] = TUNE_SMOOTH_MS,
    suppression_ms: Sequence[float] = TUNE_SUPPRESSION_MS,
) -> list[tuple[Settings, StreamStats]]:
    """Score every setting of the grid on a development stream; best first.

    The model runs once per stride (the offline reference, equal to the streaming engine); every threshold,
    smoothing span and suppression time replays the decision rule on those outputs. The objective is
    ``correct - wrong - false positives``. Settings within ``TUNE_SLACK`` (a share of the truth words) of the
    best objective count as equally good, and among them the most conservative come first: the higher
    threshold, then the longer suppression, the longer smoothing and the longer stride (cheaper). This guards
    against false accepts that a short development stream may not show. The rest follow by objective.
    """
    rate = module.front_end.config.sample_rate
    wave = resample(torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1), sample_rate, rate)
    seconds, words, labels = wave.numel() / rate, vocabulary(module), list(module.labels)
    results = []
    for stride in strides_ms:
        windowing = Windowing.of(module.front_end, stride)
        grid = [Settings(t, stride, s, q) for t, s, q in itertools.product(thresholds, smooth_ms, suppression_ms)]
        tail = max(s.smooth_windows for s in grid) - 1
        probs = offline_scores(module, wave, stride, tail)
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


def make_stream_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws make-stream``."""
    parser = argparse.ArgumentParser(
        prog="kws make-stream",
        description="Build a long test stream of words over background noise, with its truth CSV beside it.",
    )
    parser.add_argument("--source", required=True, help="Speech Commands-layout folder to take the words from")
    parser.add_argument("--noise", help=f"folder of background recordings (default: SOURCE/{NOISE_DIR})")
    parser.add_argument("--out", required=True, help="stream WAV to write; the truth goes to the same name .csv")
    parser.add_argument("--minutes", type=float, default=MINUTES, help=f"stream length (default: {MINUTES:g})")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--snr-db", type=float, default=SNR_DB,
                       help=f"median word RMS over noise RMS in dB (default: {SNR_DB:g})")
    level.add_argument("--noise-level", type=float, help="absolute noise RMS instead of --snr-db (e.g. 0.01)")
    parser.add_argument("--words", help="comma-separated words to use (default: every word of SOURCE)")
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="test",
                        help="take clips of this split of SOURCE (default: test)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def make_stream_main(argv: list[str]) -> int:
    """Entry point of ``kws make-stream``; returns the exit status."""
    args = make_stream_parser().parse_args(argv)
    if args.minutes <= 0:
        raise KWSError(f"--minutes must be positive, not {args.minutes:g}")
    if args.noise_level is not None and args.noise_level < 0:
        raise KWSError(f"--noise-level cannot be negative, not {args.noise_level:g}")
    words = [w.strip() for w in args.words.split(",") if w.strip()] if args.words else None
    audio, truth = make_stream(args.source, args.noise, args.minutes, args.snr_db, args.noise_level, args.seed,
                               words, args.split)  # fmt: skip
    save_audio(args.out, audio)
    write_truth(truth_path(args.out), truth)
    console.print(f"wrote {args.out} ({args.minutes:g} min, {len(truth)} words) and {truth_path(args.out)}",
                  highlight=False)  # fmt: skip
    return 0


def evaluate_stream_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws evaluate-stream``."""
    parser = argparse.ArgumentParser(
        prog="kws evaluate-stream",
        description="Score streaming detections against a truth CSV (TensorFlow test_streaming_accuracy rates).",
    )
    parser.add_argument("stream", help="stream audio file (from kws make-stream)")
    parser.add_argument("truth", nargs="?", help="truth CSV word,start,end (default: the stream's name with .csv)")
    parser.add_argument("--ckpt", required=True, help="model checkpoint written by kws fit (.ckpt)")
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
    module, tolerance = detector.module, args.tolerance_ms / 1000
    if args.tune:
        ranked = tune(module, load_audio(args.stream, module.front_end.config.sample_rate), truth,
                      tolerance_s=tolerance)  # fmt: skip
        console.print(_stats_table(ranked[:TUNE_SHOWN], f"{args.stream}: best detector settings"))
        return 0
    result = transcribe_source(detector, args.stream, args.chunk_samples)
    stats = score_stream(result.words, truth, vocabulary(module), result.seconds, tolerance)
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
