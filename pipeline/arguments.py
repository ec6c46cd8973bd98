"""Command-line pieces shared by the tools that run a trained model (``kws transcribe``, ``predict``,
``evaluate-stream`` and ``live``): which model, the detector's flags, and the files that inputs name."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from pipeline.console import err_console
from pipeline.errors import KWSError
from pipeline.runtime.audio import AUDIO_SUFFIXES
from pipeline.runtime.decision import PATIENCE, SMOOTH_MS, STRIDE_MS, SUPPRESSION_MS, THRESHOLD
from pipeline.runtime.onnx_model import RUNTIMES, OnnxModel
from pipeline.runtime.spotter import CHUNK_SAMPLES, STDIN, open_model
from pipeline.runtime.streaming import STREAM_STRIDE_MS, Classifier, Detector


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` (an exported model), ``--ckpt`` (a checkpoint or a bundled model's name) and ``--runtime``."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="model exported by kws export (.onnx): runs without PyTorch")
    which.add_argument("--ckpt", help="model checkpoint written by kws fit (.ckpt), or the name of a bundled model "
                       "(default: the bundled model, see kws models)")  # fmt: skip
    parser.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0],
                        help="how a --ckpt checkpoint runs: exported to ONNX Runtime in memory, or eager PyTorch "
                        f"(default: {RUNTIMES[0]})")  # fmt: skip


def model_from_args(args: argparse.Namespace) -> Classifier:
    """Load the model :func:`add_model_arguments` names (:func:`~pipeline.runtime.spotter.open_model`); a bundled one is
    named on stderr. Exported and bundled models run without PyTorch."""
    if args.model:
        return OnnxModel(args.model)
    model, card = open_model(args.ckpt, args.runtime)
    if card is not None:
        err_console.print(f"using the {card.summary()}", highlight=False, soft_wrap=True)
    return model


OWN = "the model's own operating point if it carries one, else"


def add_detector_arguments(parser: argparse.ArgumentParser, chunks: bool = True, hold_ms: float | None = None) -> None:
    """The model flags and the detector's; ``chunks``: also ``--chunk-samples``, for tools that read files;
    ``hold_ms``: the tool's default of ``--hold-ms``. A decision setting left out takes the model's operating
    point (``kws evaluate-stream --tune --save``), else the engine's default."""
    add_model_arguments(parser)
    parser.add_argument("--threshold", type=float, help=f"smoothed score a word must exceed, 0-1 (default: {OWN} "
                        f"{THRESHOLD})")  # fmt: skip
    parser.add_argument("--stride-ms", type=float,
                        help=f"step between model windows, a multiple of 10 ms (default: {OWN} {STRIDE_MS:g}, or a "
                        f"streaming model's own step, whose multiples its strides are: {STREAM_STRIDE_MS:g} for a "
                        "causal MatchboxNet, 80 for the speech embedding)")  # fmt: skip
    parser.add_argument("--smooth-ms", type=float,
                        help=f"span of the moving average of model outputs (default: {OWN} {SMOOTH_MS:g}, or one "
                        "stride for a streaming model)")  # fmt: skip
    parser.add_argument(
        "--suppression-ms", type=float, help=f"quiet time after each detected word (default: {OWN} {SUPPRESSION_MS:g})"
    )
    parser.add_argument(
        "--patience", type=int, help=f"consecutive windows whose top class must be the word (default: {OWN} {PATIENCE})"
    )
    default = "when the word's run of windows ends: later, with finer times" if hold_ms is None else f"{hold_ms:g}"
    parser.add_argument(
        "--hold-ms",
        type=float,
        default=hold_ms,
        help=f"emit a word at most this long after it is decided, 0 for at once (default: {default})",
    )
    if chunks:
        parser.add_argument(
            "--chunk-samples",
            type=int,
            default=CHUNK_SAMPLES,
            help=f"audio frames read and processed per block (default: {CHUNK_SAMPLES})",
        )


def detector_from_args(args: argparse.Namespace) -> Detector:
    """The detector that the flags of :func:`add_detector_arguments` describe."""
    if getattr(args, "chunk_samples", 1) <= 0:
        raise KWSError(f"--chunk-samples must be positive, not {args.chunk_samples}")
    return Detector(model_from_args(args), args.threshold, args.stride_ms, args.smooth_ms, args.suppression_ms,
                    args.hold_ms, patience=args.patience)  # fmt: skip


def expand_inputs(inputs: list[str], stdin: bool = True) -> tuple[list[str], list[str]]:
    """Resolve files, folders (recursively, audio suffixes only), globs and ``-`` (when ``stdin``) into a
    list of sources.

    Returns the sources (each file once, in order) and one error sentence per input that names nothing usable.
    """
    sources: dict[str, None] = {}  # ordered set
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if (stdin and item == STDIN) or path.is_file():
            found = [item]
        elif path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                errors.append(f"{item}: the folder holds no audio files")
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                errors.append(f"{item}: no file matches this pattern")
        else:
            found = []
            errors.append(f"{item}: no such file or folder")
        sources.update(dict.fromkeys(found))
    return list(sources), errors
