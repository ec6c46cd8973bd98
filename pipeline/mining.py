"""``kws mine``: hard-negative mining. Run a model over audio without command words, keep the windows it takes
for a command, and write them as clips that ``kws fit --data.negatives`` reads.

Every file of the ``--negatives`` folders in the chosen split (the split rule of ``data.negatives``, so that no
held-out speaker's audio is mined) is scored window by window at ``--stride-ms`` (the offline reference of the
streaming engine). A window is kept when some command word's score exceeds ``--floor``; of windows that overlap,
only the highest-scoring is kept (each kept window then stands for one false accept). Each becomes a 1 s clip
``<out>/_mined_/<speaker>_nohash_r<round>-<file>-<ms>.wav`` (the speaker of its source, so that splits keep to
speakers; ``<file>`` the source's name less its speaker); ``validation_list.txt`` and ``testing_list.txt`` are
written empty, so everything mined trains.

Rounds: mine with the model of round ``r`` into the same ``--out`` with ``--round r``, train the next model with
``--data.negatives '[..., OUT]'``, and mine again with it. ``.kws_mine.json`` records what each round scored, so an
interrupted round resumes at the next file, and a finished one is not mined again.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.arguments import add_model_arguments, model_from_args
from pipeline.console import console, warn
from pipeline.data.negatives import file_speaker, file_split, negative_files
from pipeline.data.speech_commands import SPLITS, TESTING_LIST, VALIDATION_LIST, is_word
from pipeline.errors import AudioError, KWSError
from pipeline.files import write_text
from pipeline.runtime.audio import read_audio, save_audio
from pipeline.runtime.streaming import Classifier, offline_scores, windowing_of

MINED = "_mined_"
MARKER = ".kws_mine.json"
FLOOR = 0.3  # a window is kept when a command word scores above this
STRIDE_MS = 100.0


def peaks(scores: np.ndarray, floor: float, spacing: int) -> list[int]:
    """Windows whose score exceeds ``floor``, highest first, none within ``spacing`` windows of a higher one."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] <= floor:
            break
        if all(abs(int(i) - k) >= spacing for k in kept):
            kept.append(int(i))
    return sorted(kept)


def mine_file(
    model: Classifier, path: Path, floor: float, stride_ms: float
) -> list[tuple[int, str, float, np.ndarray]]:  # fmt: skip
    """The windows of one file a model takes for a command: ``(start in ms, word, score, 1 s of audio)``."""
    w = windowing_of(model, stride_ms)
    audio = read_audio(path, model.sample_rate)
    probs = offline_scores(model, audio, stride_ms)
    words = np.array([is_word(label) for label in model.labels])
    best = np.where(words, probs, 0.0)
    top, score = best.argmax(axis=1), best.max(axis=1)
    padded = np.pad(audio, (0, max(0, (len(probs) - 1) * w.stride + w.samples - len(audio))))
    return [(round(1000 * i * w.stride / w.sample_rate), model.labels[top[i]], float(score[i]),
             padded[i * w.stride : i * w.stride + w.samples])
            for i in peaks(score, floor, max(1, w.samples // w.stride))]  # fmt: skip


def mine(model: Classifier, roots: list[Path], out: Path, round_: int, floor: float = FLOOR,
         stride_ms: float = STRIDE_MS, split: str = "train", salt: str = "") -> Counter:  # fmt: skip
    """Mine ``roots`` into ``out`` (see the module docstring); returns the kept windows per word."""
    marker = out / MARKER
    state = json.loads(marker.read_text()) if marker.is_file() else {"rounds": {}}
    done = state["rounds"].setdefault(str(round_), {"floor": floor, "stride_ms": stride_ms, "split": split,
                                                      "files": {}})  # fmt: skip
    if (done["floor"], done["stride_ms"], done["split"]) != (floor, stride_ms, split):
        raise KWSError(f"round {round_} of {out} was mined with another --floor, --stride-ms or --split: give the "
                       "same, or another --round")  # fmt: skip
    jobs = []
    for root in roots:
        if not root.is_dir():
            raise KWSError(f"--negatives {root} is not a folder")
        files, lists = negative_files(root)
        if not files:
            raise KWSError(f"--negatives {root} holds no audio files")
        jobs += [p for p in files
                 if file_split(root, p, lists, salt) == split and str(p.resolve()) not in done["files"]]  # fmt: skip
    (out / MINED).mkdir(parents=True, exist_ok=True)
    for name in (VALIDATION_LIST, TESTING_LIST):
        if not (out / name).exists():
            write_text(out / name, "")
    columns = (TextColumn(f"mining round {round_}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("mine", total=len(jobs))
        for path in jobs:
            try:
                kept = mine_file(model, path, floor, stride_ms)
            except AudioError as err:
                warn(f"skipped {err}")
                kept = []
            for ms, _word, _score, clip in kept:
                name = out / MINED / f"{file_speaker(path)}_nohash_r{round_}-{path.stem.split('_nohash_')[-1]}-{ms}.wav"
                if not name.exists():
                    save_audio(name, clip)
            done["files"][str(path.resolve())] = [[ms, word, round(score, 4)] for ms, word, score, _ in kept]
            write_text(marker, json.dumps(state, indent=1) + "\n")
            bar.advance(task)
    return Counter(word for found in done["files"].values() for _, word, _ in found)


def main(argv: list[str]) -> int:
    """Entry point of ``kws mine``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kws mine",
        description="Hard-negative mining: keep the windows of audio without command words that a model takes for "
        "a command, as clips for kws fit --data.negatives.",
    )
    parser.add_argument(
        "--negatives",
        nargs="+",
        required=True,
        metavar="FOLDER",
        help="folders of audio without command words (kws synth-speech's, real running speech)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the mined corpus (new, or one of earlier rounds)")
    parser.add_argument("--round", type=int, default=1, dest="round_", help="this round's number (default: 1)")
    parser.add_argument(
        "--floor",
        type=float,
        default=FLOOR,
        help=f"keep windows where a command word scores above this (default: {FLOOR:g})",
    )
    parser.add_argument(
        "--stride-ms", type=float, default=STRIDE_MS, help=f"step between the windows scored (default: {STRIDE_MS:g})"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="mine the files of this split of each folder (default: train; never mine test audio)",
    )
    parser.add_argument("--hash-salt", default="", help="data.hash_salt of the training run (default: none)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.floor < 1:
        raise KWSError(f"--floor must lie in [0, 1), not {args.floor:g}")
    if args.out.exists() and not args.out.is_dir():
        raise KWSError(f"--out {args.out} is a file, not a folder")
    if args.out.is_dir() and any(args.out.iterdir()) and not (args.out / MARKER).is_file():
        raise KWSError(f"{args.out} is not empty and was not made by kws mine (no {MARKER}): choose another --out")
    model = model_from_args(args)
    counts = mine(model, [Path(r) for r in args.negatives], args.out, args.round_, args.floor, args.stride_ms,
                  args.split, args.hash_salt)  # fmt: skip
    total = sum(counts.values())
    console.print(f"{args.out}: round {args.round_} kept {total} windows"
                  + (f" ({', '.join(f'{w} {n}' for w, n in counts.most_common())})" if total else ""),
                  highlight=False)  # fmt: skip
    return 0
