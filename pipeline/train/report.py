"""Test report: overall accuracy, per-word precision and recall, and the confusion matrix (CSV and PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.console import console  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402

CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"


def per_class(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and support per class of a ``(true, predicted)`` count matrix (NaN where undefined)."""
    c = confusion.double()
    hits = c.diag()
    predicted, support = c.sum(0), c.sum(1)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), nan)
    recall = torch.where(support > 0, hits / support.clamp_min(1), nan)
    return precision, recall, support


def print_report(confusion: torch.Tensor, labels: list[str], title: str = "test") -> float:
    """Print the accuracy and a per-word table; return the accuracy."""
    precision, recall, support = per_class(confusion)
    total = int(confusion.sum())
    accuracy = float(confusion.diag().sum()) / max(total, 1)
    table = Table(title=f"{title}: accuracy {accuracy:.2%} on {total} clips")
    for column in ("word", "precision", "recall", "clips"):
        table.add_column(column, justify="left" if column == "word" else "right")
    for i, label in enumerate(labels):
        fmt = lambda v: "-" if torch.isnan(v) else f"{float(v):.1%}"  # noqa: E731
        table.add_row(label, fmt(precision[i]), fmt(recall[i]), str(int(support[i])))
    console.print(table)
    return accuracy


def write_confusion(confusion: torch.Tensor, labels: list[str], out_dir: str | Path) -> list[Path]:
    """Write the confusion matrix (rows: true word, columns: predicted word) as CSV and PNG, atomically."""
    out_dir = Path(out_dir)
    csv_path, png_path = out_dir / CONFUSION_CSV, out_dir / CONFUSION_PNG
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *labels])
        for label, row in zip(labels, confusion.tolist()):
            writer.writerow([label, *row])
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * n + 2), max(3.5, 0.45 * n + 1.5)))
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return [csv_path, png_path]
