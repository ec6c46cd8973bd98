"""Models that ship inside the package, so that ``kws transcribe`` and the microphone demo work at once.

Each bundled model is an inference-only checkpoint in ``pipeline/runtime/weights/`` (hyper-parameters and the front
end's and acoustic model's weights, as ``kws fit`` writes them, without optimizer state), its ``kws export`` (what
the torch-free runtime runs), and a card in
``pipeline/runtime/weights/models.json``: what it recognises, how it was trained, and its figures measured by
``scripts/crossval.py`` on real speakers it never heard. ``scripts/ship_model.py`` writes both.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from pipeline.console import console
from pipeline.errors import KWSError
from pipeline.runtime.decision import Settings

WEIGHTS_DIR = Path(__file__).parent / "weights"
CARDS_FILE = WEIGHTS_DIR / "models.json"


@dataclass(frozen=True)
class ModelCard:
    """A bundled model and its measured figures.

    Args:
        name: What ``--ckpt`` accepts instead of a path.
        file: Checkpoint file in ``pipeline/runtime/weights/``.
        export: Its ``kws export`` in ``pipeline/runtime/weights/``.
        about: One line: task and architecture.
        labels: Class names in output order.
        params: Parameters of the acoustic model.
        accuracy: Mean accuracy over the cross-validation folds (unseen real speakers, 0-1).
        accuracy_spread: Standard deviation of that accuracy over the folds.
        folds: Number of cross-validation folds behind the figures.
        threshold: The detector threshold of the model's operating point (``decision``).
        commands_found: Share of command words found correctly on streams of unseen speakers at 10 dB SNR, at
            the operating point.
        false_accepts_per_hour: False accepts per hour on streams of unseen speakers saying other words, at the
            operating point.
        ms_per_window: Median time to score one 1 s window on one CPU thread (front end and model, ONNX Runtime).
        recipe: The command that reproduces the file.
        default: The model used when no ``--ckpt`` is given.
        running_speech_false_accepts_per_hour: False accepts per hour on unseen real running speech, at the
            operating point (None: not measured).
        decision: The operating point the model carries (:meth:`pipeline.runtime.decision.Settings.to_dict`);
            older cards give the threshold alone.
    """

    name: str
    file: str
    export: str
    about: str
    labels: list[str]
    params: int
    accuracy: float
    accuracy_spread: float
    folds: int
    threshold: float
    commands_found: float
    false_accepts_per_hour: float
    ms_per_window: float
    recipe: str
    default: bool = False
    running_speech_false_accepts_per_hour: float | None = None
    decision: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The checkpoint."""
        return WEIGHTS_DIR / self.file

    @property
    def export_path(self) -> Path:
        """The exported ONNX model."""
        return WEIGHTS_DIR / self.export

    def summary(self) -> str:
        """One line naming the model and its cross-validated accuracy."""
        return (f"bundled model {self.name}: {self.about}; {self.accuracy:.1%} on unseen real speakers "
                f"({self.folds}-fold cross-validation)")  # fmt: skip


def bundled_models() -> list[ModelCard]:
    """Every bundled model, the default first."""
    try:
        cards = json.loads(CARDS_FILE.read_text())
    except FileNotFoundError:
        return []
    return sorted((ModelCard(**card) for card in cards), key=lambda card: not card.default)


def resolve_model(ckpt: str | None) -> tuple[str, ModelCard | None]:
    """The checkpoint path that ``--ckpt`` names (a file, or a bundled model's name), and its card if bundled.

    ``None`` means the default bundled model.

    Raises:
        KWSError: no ``--ckpt`` and no bundled model.
    """
    cards = bundled_models()
    if ckpt is None:
        if not cards:
            raise KWSError("no model is bundled with this installation: give a checkpoint with --ckpt")
        return str(cards[0].path), cards[0]
    by_name = {card.name: card for card in cards}
    if ckpt in by_name and not Path(ckpt).exists():
        return str(by_name[ckpt].path), by_name[ckpt]
    return ckpt, None


def main(argv: list[str]) -> int:
    """Entry point of ``kws models``: a table of the bundled models; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kws models",
        description="List the models bundled with the package (use one with --ckpt NAME; the first is the default).",
    )
    parser.parse_args(argv)
    cards = bundled_models()
    if not cards:
        console.print("no model is bundled with this installation", highlight=False)
        return 0
    table = Table(title="bundled models: unseen real speakers, cross-validated")
    for column in ("name", "accuracy", "threshold", "found", "FA/h words", "FA/h speech", "params", "KiB",
                   "ms/window"):  # fmt: skip
        table.add_column(column, justify="left" if column == "name" else "right")
    for card in cards:
        running = card.running_speech_false_accepts_per_hour
        table.add_row(
            card.name + " *" * card.default, f"{card.accuracy:.1%} ± {card.accuracy_spread:.1%}",
            f"{card.threshold:g}", f"{card.commands_found:.0%}", f"{card.false_accepts_per_hour:.1f}",
            "-" if running is None else f"{running:.1f}", f"{card.params:,}",
            f"{card.path.stat().st_size / 1024:.0f}", f"{card.ms_per_window:.2f}",
        )  # fmt: skip
    console.print(table)
    console.print("* the default. accuracy: 1 s clips, mean ± sd over the folds. found (share of command words at "
                  "10 dB SNR), FA/h words and FA/h speech (false accepts per hour of other words and of running "
                  "speech): the streaming engine at the model's own operating point. ms/window: one 1 s window on "
                  "one CPU thread.", highlight=False)  # fmt: skip
    for card in cards:
        point = Settings(**card.decision).describe() if card.decision else f"threshold {card.threshold:g}"
        console.print(f"\n{card.name}: {card.about}\n  labels: {', '.join(card.labels)}\n  operating point: {point}"
                      f"\n  reproduce: {card.recipe}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    return 0
