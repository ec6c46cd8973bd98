"""Long test streams: words of a Speech Commands-layout folder laid over background noise (``kws make-stream``).

Words are laid end to end, 1-3 s apart (``gap_seconds``), over random stretches of the noise recordings (or none:
``snr_db=None``); the truth goes next to the audio as ``<stream>.csv`` (``word,start,end`` in seconds, the extent of
each word's voiced part, found from its energy). Files of any length are laid whole, so a folder of running speech
(``kws synth-speech``'s ``_speech_``) makes a stream of speech without command words; ``repeat=False`` lays every
file once, in a random order, instead of drawing them with replacement. ``kws evaluate-stream``
(:mod:`pipeline.stream_eval`) scores a detector against it.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.console import console
from pipeline.data.speech_commands import NOISE_DIR, SILENCE, SPLITS, audio_files, scan
from pipeline.errors import KWSError
from pipeline.files import write_text
from pipeline.runtime.audio import SAMPLE_RATE, read_audio, save_audio

MINUTES = 10.0  # default stream length
GAP_SECONDS = (1.0, 3.0)  # silence between one word's end and the next word's start, uniform
SNR_DB = 10.0  # default speech-to-noise ratio: median word RMS over noise RMS
ACTIVE_DB = -25.0  # a 10 ms frame belongs to the word when its RMS is within this of the loudest frame
MARGIN_SECONDS = 0.1  # clip audio kept around the voiced part, faded in and out
FADE_SECONDS = 0.02
NOISE_SEGMENT_SECONDS = 5.0  # background built from random stretches of this length, cross-faded
PEAK = 0.99  # the stream is scaled down when the mix would exceed this
TRUTH_HEADER = ("word", "start", "end")


@dataclass(frozen=True)
class TruthWord:
    """One spoken word of a stream, times in seconds."""

    word: str
    start: float
    end: float


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
    snr_db: float | None = SNR_DB,
    noise_level: float | None = None,
    seed: int = 0,
    words: Sequence[str] | None = None,
    split: str = "test",
    gap_seconds: tuple[float, float] = GAP_SECONDS,
    repeat: bool = True,
) -> tuple[np.ndarray, list[TruthWord]]:
    """Build a stream of words over noise; return the 16 kHz audio and its truth.

    Args:
        source: A Speech Commands-layout folder.
        noise_dir: Folder of background recordings (default: ``<source>/_background_noise_``).
        minutes: Stream length (with ``repeat=False``, at most this long: it ends after the last file).
        snr_db: Median word RMS over noise RMS, in dB (ignored when ``noise_level`` is given); ``None``: no noise.
        noise_level: Absolute RMS of the noise instead.
        seed: Random seed (word order, gaps, noise stretches).
        words: Only these words (default: every word of the folder).
        split: Clips of this split (``train``, ``validation``, ``test``) or ``all``.
        gap_seconds: Range of the uniform silence between one word's end and the next word's start.
        repeat: Draw clips with replacement (the default), or lay each once in a random order.

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
    clean = snr_db is None and noise_level is None
    noises: list[np.ndarray] = []
    if not clean:
        noise_dir = Path(noise_dir) if noise_dir else Path(source) / NOISE_DIR
        noise_files = audio_files(noise_dir)
        if not noise_files:
            raise KWSError(f"no background-noise audio files in {noise_dir}: give a folder of recordings with --noise")
        noises = [n for n in (read_audio(p) for p in noise_files) if len(n) > 2 * FADE_SECONDS * SAMPLE_RATE]
        if not noises:
            raise KWSError(f"the background-noise files in {noise_dir} are all shorter than {2 * FADE_SECONDS:g} s")
    rng = np.random.default_rng(seed)
    length = int(minutes * 60 * SAMPLE_RATE)
    speech = np.zeros(length, dtype=np.float32)
    margin, fade = int(MARGIN_SECONDS * SAMPLE_RATE), int(FADE_SECONDS * SAMPLE_RATE)
    truth: list[TruthWord] = []
    levels: list[float] = []
    order = iter(rng.permutation(len(clips)).tolist()) if not repeat else None
    t = int(rng.uniform(*gap_seconds) * SAMPLE_RATE)
    while True:
        pick = rng.integers(len(clips)) if order is None else next(order, None)
        if pick is None:
            break
        clip = clips[pick]
        audio = read_audio(clip.path)
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
        t += (b - a) + int(rng.uniform(*gap_seconds) * SAMPLE_RATE)
    if order is not None:  # each file once: the stream ends after the last one
        length = min(length, t)
        speech = speech[:length]
    if clean:
        mix = speech
    else:
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
    return sorted(truth, key=lambda w: w.start + w.end)  # by centre


def build_parser() -> argparse.ArgumentParser:
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
    level.add_argument(
        "--snr-db", type=float, default=SNR_DB, help=f"median word RMS over noise RMS in dB (default: {SNR_DB:g})"
    )
    level.add_argument("--noise-level", type=float, help="absolute noise RMS instead of --snr-db (e.g. 0.01)")
    parser.add_argument("--words", help="comma-separated words to use (default: every word of SOURCE)")
    parser.add_argument(
        "--split", choices=(*SPLITS, "all"), default="test", help="take clips of this split of SOURCE (default: test)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``kws make-stream``; returns the exit status."""
    args = build_parser().parse_args(argv)
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
