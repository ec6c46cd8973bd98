"""``kws predict``: classify clips (files, folders, globs) and write each file's label and class scores.

Each file is read as one clip of the model's window (1 s): shorter files are zero-padded at the end, longer
ones are cut to their first second and counted in a warning (``kws transcribe`` finds words in long files).
Scores are the softmax probabilities of every label. A bad input is reported in one sentence on stderr and the
others are still classified; the exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from pipeline.arguments import add_model_arguments, expand_inputs, model_from_args
from pipeline.console import err_console, print_error, warn
from pipeline.errors import AudioError
from pipeline.files import write_text
from pipeline.runtime.audio import CLIP_SECONDS, clip_samples, fit_length, read_audio
from pipeline.runtime.streaming import Classifier, window_probs

FORMATS = ("csv", "json", "text")
BATCH = 64  # clips per model call
FAILED = 1  # exit status when any input could not be classified


@dataclass(frozen=True)
class Prediction:
    """The top label of one file and the probability of every label."""

    file: str
    label: str
    score: float
    scores: dict[str, float]


def _batches(model: Classifier, sources: list[str], errors: list[str]) -> Iterator[tuple[list[str], np.ndarray, int]]:
    """``(files, clips, files longer than a window)`` in batches of ``BATCH``; unreadable files go to ``errors``."""
    window = clip_samples(model.sample_rate)
    for begin in range(0, len(sources), BATCH):
        names, clips, long = [], [], 0
        for source in sources[begin : begin + BATCH]:
            try:
                audio = read_audio(source, model.sample_rate)
            except AudioError as err:
                errors.append(str(err))
                print_error(str(err))
                continue
            long += len(audio) > window
            names.append(source)
            clips.append(fit_length(audio, window))
        if names:
            yield names, np.stack(clips), long


def predict(
    model: Classifier, sources: list[str], errors: list[str], progress: Progress | None = None
) -> list[Prediction]:
    """Classify every source; unreadable ones are reported and appended to ``errors``."""
    labels, out, long = list(model.labels), [], 0
    task = progress.add_task("classifying", total=len(sources)) if progress else None
    for names, clips, n_long in _batches(model, sources, errors):
        long += n_long
        probs = window_probs(model, model.features(clips)).tolist()
        for name, row in zip(names, probs):
            top = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(name, labels[top], row[top], dict(zip(labels, row))))
        if progress is not None and task is not None:
            progress.advance(task, len(names))
    if long:
        warn(f"{long} file(s) are longer than {CLIP_SECONDS:g} s: only their first second was classified "
             "(kws transcribe finds words in files of any length)")  # fmt: skip
    return out


def render(predictions: list[Prediction], labels: list[str], fmt: str) -> str:
    """Format predictions as ``csv`` (one column per label's score), ``json`` or ``text``."""
    if fmt == "json":
        return json.dumps([p.__dict__ for p in predictions], indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "label", "score", *labels])
        writer.writerows([p.file, p.label, f"{p.score:.4f}", *(f"{p.scores[k]:.4f}" for k in labels)]
                         for p in predictions)  # fmt: skip
        return out.getvalue()
    return "".join(f"{p.file}  {p.label}  {p.score:.2f}\n" for p in predictions)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws predict``."""
    parser = argparse.ArgumentParser(
        prog="kws predict",
        description="Classify one-second clips: each file's most likely label and the score of every label.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder (searched recursively) or glob")
    add_model_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="csv", help="output format (default: csv)")
    parser.add_argument("--output", "-o", help="write the result to this file (atomically) instead of stdout")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``kws predict``; returns the exit status."""
    args = build_parser().parse_args(argv)
    sources, errors = expand_inputs(args.inputs, stdin=False)
    for message in errors:
        print_error(message)
    if not sources:
        return FAILED
    model = model_from_args(args)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        predictions = predict(model, sources, errors, progress)
    text = render(predictions, list(model.labels), args.format)
    if args.output:
        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return FAILED if errors else 0
