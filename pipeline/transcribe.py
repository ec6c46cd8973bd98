"""``kws transcribe``: find command words, with their times, in audio files of any length.

Each input is read in blocks of ``--chunk-samples`` frames and fed to one streaming
:class:`~pipeline.runtime.streaming.Detector`, so memory does not grow with the file. Inputs are files (any format,
rate and channel count libsndfile reads), folders (searched recursively for audio), glob patterns, or ``-``
(a WAV stream on standard input, read as it arrives). A bad input is reported in one sentence on stderr and
the others are still transcribed; the exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import soundfile as sf
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.arguments import add_detector_arguments, detector_from_args, expand_inputs
from pipeline.console import err_console, print_error
from pipeline.errors import AudioError
from pipeline.files import write_text
from pipeline.runtime.spotter import STDIN, Transcript, transcribe_source

PROGRESS_SECONDS = 60.0  # show a progress bar for files at least this long (when stderr is a terminal)
FORMATS = ("text", "json", "jsonl", "csv", "srt")
STREAMED = ("text", "jsonl", "csv")  # printed file by file as each is done; json and srt are written at the end
FAILED = 1  # exit status when any input could not be transcribed


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def render(transcripts: list[Transcript], fmt: str, header: bool = True) -> str:
    """Format transcripts as ``text``, ``json``, ``jsonl``, ``csv`` or ``srt``; ``header``: the CSV header line."""
    if fmt == "json":
        return json.dumps([{**asdict(t), "words": [asdict(w) for w in t.words]} for t in transcripts], indent=2) + "\n"
    rows = [(t.file, w) for t in transcripts for w in t.words]
    if fmt == "jsonl":
        return "".join(json.dumps({"file": name, **asdict(w)}) + "\n" for name, w in rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if header:
            writer.writerow(["file", "word", "start", "end", "score"])
        writer.writerows([name, w.word, f"{w.start:.3f}", f"{w.end:.3f}", f"{w.score:.3f}"] for name, w in rows)
        return out.getvalue()
    if fmt == "srt":
        prefix = (lambda name: f"{name}: ") if len(transcripts) > 1 else (lambda name: "")
        return "".join(
            f"{n}\n{_srt_time(w.start)} --> {_srt_time(w.end)}\n{prefix(name)}{w.word} ({w.score:.2f})\n\n"
            for n, (name, w) in enumerate(rows, start=1)
        )
    lines = []
    for t in transcripts:
        lines.append(f"{t.file}  ({t.seconds:.1f} s, {len(t.words)} word{'s' * (len(t.words) != 1)})")
        lines += [f"  {w.start:8.2f} - {w.end:8.2f} s  {w.word:<12} {w.score:.2f}" for w in t.words]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws transcribe``."""
    parser = argparse.ArgumentParser(
        prog="kws transcribe",
        description="Find command words, with start/end times and confidence, in audio files of any length.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio file, folder (searched recursively), glob pattern, or - for a WAV stream on stdin",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("--output", "-o", help="write the result to this file (atomically) instead of stdout")
    add_detector_arguments(parser)
    return parser


def _progress_callback(progress: Progress, name: str) -> Callable[[int, int], None]:
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(Path(name).name, total=total)
        progress.update(task, completed=done)

    return update


def _long_file(source: str) -> bool:
    if source == STDIN:
        return False
    try:
        info = sf.info(source)
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return info.frames >= PROGRESS_SECONDS * info.samplerate


def main(argv: list[str]) -> int:
    """Entry point of ``kws transcribe``; returns the exit status."""
    args = build_parser().parse_args(argv)
    sources, errors = expand_inputs(args.inputs)
    for message in errors:
        print_error(message)
    if not sources:
        return FAILED
    detector = detector_from_args(args)
    transcripts: list[Transcript] = []
    streaming = args.output is None and args.format in STREAMED
    show_progress = err_console.is_terminal
    for source in sources:
        try:
            if show_progress and _long_file(source):
                columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
                with Progress(*columns, console=err_console, transient=True) as progress:
                    update = _progress_callback(progress, source)
                    result = transcribe_source(detector, source, args.chunk_samples, update)
            else:
                result = transcribe_source(detector, source, args.chunk_samples)
        except AudioError as err:
            errors.append(str(err))
            print_error(str(err))
            continue
        transcripts.append(result)
        if streaming:
            sys.stdout.write(render([result], args.format, header=len(transcripts) == 1))
            sys.stdout.flush()
    if not streaming:
        text = render(transcripts, args.format)
        if args.output:
            write_text(args.output, text)
        else:
            sys.stdout.write(text)
    return FAILED if errors else 0
