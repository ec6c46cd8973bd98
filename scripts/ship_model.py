"""Bundle a trained checkpoint with the package: ``pipeline/weights/<name>.ckpt`` and its card in ``models.json``.

The bundled file keeps what inference needs (hyper-parameters, labels, front-end and acoustic-model weights) and
drops the optimizer state. The card's accuracy and false accepts are those of ``--experiment`` in
``runs/crossval/results.json`` (``scripts/crossval.py``): the same recipe, measured on real speakers that each
fold's model never heard. The shipped model itself trained on every speaker, so no figure is measured on it.

Example:
    python scripts/ship_model.py --ckpt runs/kws12/checkpoints/best.ckpt --name kws12 --experiment final \\
        --recipe "kws fit --config configs/real_12.yaml --config configs/kws12.yaml"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_zoo import latency_ms  # noqa: E402

from pipeline.bundled import CARDS_FILE, WEIGHTS_DIR, ModelCard, bundled_models  # noqa: E402
from pipeline.files import atomic_path, write_text  # noqa: E402
from pipeline.model import INFERENCE, load_model, read_checkpoint  # noqa: E402

MAX_BYTES = 1 << 20  # a bundled model stays under 1 MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint written by kws fit")
    parser.add_argument("--name", required=True, help="the bundled model's name (what --ckpt NAME selects)")
    parser.add_argument("--experiment", required=True, help="the crossval.py experiment that measured this recipe")
    parser.add_argument("--about", required=True, help="one line: task and architecture")
    parser.add_argument("--recipe", required=True, help="the command that trains the checkpoint")
    parser.add_argument("--threshold", type=float, required=True,
                        help="the model's detector threshold, one of the thresholds crossval.py scored the streams at")
    parser.add_argument("--default", action="store_true", help="make it the model used when no --ckpt is given")
    args = parser.parse_args()
    path = REPO / "runs" / "crossval" / "results.json"
    results = json.loads(path.read_text()).get(args.experiment) if path.exists() else None
    if not results:
        sys.exit(f"error: runs/crossval/results.json has no results for {args.experiment}: run scripts/crossval.py")
    checkpoint = read_checkpoint(args.ckpt)
    slim = {
        "hyper_parameters": checkpoint["hyper_parameters"],
        "state_dict": {k: v for k, v in checkpoint["state_dict"].items() if k.split(".")[0] in INFERENCE},
    }
    path = WEIGHTS_DIR / f"{args.name}.ckpt"
    with atomic_path(path) as tmp:
        torch.save(slim, tmp)
    if path.stat().st_size > MAX_BYTES:
        sys.exit(f"error: {path} is {path.stat().st_size:,} bytes, over the 1 MiB a bundled model may take")
    torch.set_num_threads(1)
    model = load_model(path, runtime="torch")
    export = path.with_suffix(".onnx")
    with atomic_path(export) as tmp:
        tmp.write_bytes(model.to_onnx())
    accuracy = [r["accuracy"] for r in results.values()]
    at = [r["streams"].get(f"{args.threshold:g}") for r in results.values()]
    if not all(at):
        sys.exit(f"error: the streams of {args.experiment} were not scored at threshold {args.threshold:g}")
    card = ModelCard(
        name=args.name, file=path.name, export=export.name, about=args.about, labels=model.labels,
        params=sum(p.numel() for p in model.encoder.parameters()),
        accuracy=statistics.mean(accuracy), accuracy_spread=statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        folds=len(accuracy), threshold=args.threshold, commands_found=statistics.mean(a["commands_correct"] for a in at),
        false_accepts_per_hour=statistics.mean(a["false_accepts_per_hour"] for a in at),
        ms_per_window=latency_ms(load_model(path)), recipe=args.recipe, default=args.default,
    )  # fmt: skip
    cards = [c for c in bundled_models() if c.name != card.name]
    if card.default:
        cards = [ModelCard(**{**asdict(c), "default": False}) for c in cards]
    write_text(CARDS_FILE, json.dumps([asdict(c) for c in [card, *cards]], indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size:,} bytes) and its card in {CARDS_FILE}: {card.summary()}")


if __name__ == "__main__":
    main()
