"""``kws``: the command line. Training commands come from ``LightningCLI`` (pipeline/train/training_cli.py);
tools are plain sub-commands, loaded only when called so that they start fast.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from pipeline.console import console, err_console, print_error
from pipeline.errors import TRAINING_STACK, KWSError

# sub-command -> ("module:function" taking the remaining argv and returning the exit status, one-line help)
TOOLS: dict[str, tuple[str, str]] = {
    "synth": ("pipeline.data.synth:main", "render words with TTS voices into a Speech Commands-layout corpus"),
    "synth-speech": ("pipeline.data.speech:main", "render running speech and sounds without commands: negatives"),
    "export": (
        "pipeline.train.export:main",
        "write a checkpoint as one ONNX file for the torch-free runtime (--int8 too)",
    ),
    "predict": ("pipeline.predict:main", "classify one-second clips: each file's label and all labels' scores"),
    "transcribe": ("pipeline.transcribe:main", "find command words, with times, in audio files of any length"),
    "make-stream": (
        "pipeline.data.streams:main",
        "build a long test stream of words over noise, with its truth CSV",
    ),
    "evaluate-stream": ("pipeline.stream_eval:evaluate_stream_main", "score streaming detections against a truth CSV"),
    "mine": ("pipeline.mining:main", "hard-negative mining: keep the windows of negative audio a model fires on"),
    "live": ("pipeline.live:main", "spot command words live from a microphone (or a file played as one)"),
    "models": (
        "pipeline.runtime.bundled:main",
        "list the bundled models: task, accuracy on unseen speakers, size, speed",
    ),
}
TRAINING = {
    "fit": "train a model (resume with --ckpt_path last)",
    "validate": "score a checkpoint on the validation split",
    "test": "score a checkpoint on the test split: accuracy, per-word precision/recall, confusion matrix",
}


def print_help() -> None:
    """The command list (each command has its own --help)."""
    console.print("usage: kws COMMAND [options]   (kws COMMAND --help for the options of one command)\n", markup=False)
    for name, text in {**TRAINING, **{k: v for k, (_, v) in TOOLS.items()}}.items():
        console.print(f"  {name:<16} {text}", highlight=False)


def _import(module: str, command: str) -> ModuleType:
    """Import a command's module; a missing training package (an install of the runtime only) is one sentence."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if (err.name or "pipeline").split(".")[0] == "pipeline":
            raise
        raise KWSError(f"kws {command} needs the training packages, which are not installed ({err.name} is missing): "
                       f"{TRAINING_STACK}") from None  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kws`` and ``python -m pipeline``; returns the exit status."""
    args = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print_help()
        return 0
    try:
        if argv[0] in TOOLS:
            module, function = TOOLS[argv[0]][0].split(":")
            return getattr(_import(module, argv[0]), function)(argv[1:]) or 0
        if argv[0] not in TRAINING:
            raise KWSError(f"unknown command {argv[0]!r}; the commands are {', '.join([*TRAINING, *TOOLS])}")
        # Lightning is slow to import: only when needed
        _import("pipeline.train.training_cli", argv[0]).run_training(args)
    except KWSError as err:
        print_error(str(err))
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 0
