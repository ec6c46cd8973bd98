"""Bundle a trained checkpoint with the package: ``pipeline/runtime/weights/<name>.ckpt`` and its card in
``models.json``.

The bundled file keeps what inference needs (hyper-parameters, labels, front-end and acoustic-model weights, and
the operating point ``kws evaluate-stream --tune --save`` wrote into the checkpoint) and drops the optimizer state.
The card's accuracy is that of ``--experiment`` in ``runs/crossval/results.json`` (``scripts/crossval.py``); its
stream figures (commands found, false accepts per hour of isolated words and of running speech) are the entry
``--name`` of ``--figures``, which ``scripts/stream_benchmark.py --summary`` writes for that experiment's fold
models, each tuned as the shipped model was: the same recipe, measured on real speakers that each fold's model
never heard. The shipped model itself trained on every speaker, so no figure is measured on it.

Example:
    python scripts/ship_model.py --ckpt runs/kws12/checkpoints/best.ckpt --name kws12 --experiment negatives \\
        --figures runs/benchmark/kws12.json --about "..." --recipe "kws fit ..." --default
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from pipeline.files import atomic_path, write_text
from pipeline.measure import latency_ms
from pipeline.runtime.bundled import CARDS_FILE, WEIGHTS_DIR, ModelCard, bundled_models
from pipeline.train.model import DECISION_KEY, INFERENCE, load_model, read_checkpoint

REPO = Path(__file__).resolve().parents[1]

MAX_BYTES = 1 << 20  # a bundled model stays under 1 MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint written by kws fit")
    parser.add_argument("--name", required=True, help="the bundled model's name (what --ckpt NAME selects)")
    parser.add_argument("--experiment", required=True, help="the crossval.py experiment that measured this recipe")
    parser.add_argument("--about", required=True, help="one line: task and architecture")
    parser.add_argument("--recipe", required=True, help="the command that trains the checkpoint")
    parser.add_argument(
        "--figures",
        required=True,
        help="scripts/stream_benchmark.py --summary of this recipe's fold models (entry --name)",
    )
    parser.add_argument("--default", action="store_true", help="make it the model used when no --ckpt is given")
    args = parser.parse_args()
    path = REPO / "runs" / "crossval" / "results.json"
    results = json.loads(path.read_text()).get(args.experiment) if path.exists() else None
    if not results:
        sys.exit(f"error: runs/crossval/results.json has no results for {args.experiment}: run scripts/crossval.py")
    figures = json.loads(Path(args.figures).read_text()).get(args.name) if Path(args.figures).is_file() else None
    if not figures or "commands_found" not in figures:
        sys.exit(f"error: {args.figures} has no figures of {args.name} at its own operating point: run "
                 "scripts/stream_benchmark.py --summary on the recipe's fold models")  # fmt: skip
    checkpoint = read_checkpoint(args.ckpt)
    if not checkpoint.get(DECISION_KEY):
        sys.exit(f"error: {args.ckpt} carries no operating point: choose one with kws evaluate-stream --tune --save")
    slim = {
        "hyper_parameters": checkpoint["hyper_parameters"],
        "state_dict": {k: v for k, v in checkpoint["state_dict"].items() if k.split(".")[0] in INFERENCE},
        DECISION_KEY: checkpoint[DECISION_KEY],
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
    decision = checkpoint[DECISION_KEY]
    card = ModelCard(
        name=args.name, file=path.name, export=export.name, about=args.about, labels=model.labels,
        params=sum(p.numel() for p in model.encoder.parameters()),
        accuracy=statistics.mean(accuracy), accuracy_spread=statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        folds=len(accuracy), threshold=decision["threshold"], commands_found=figures["commands_found"],
        false_accepts_per_hour=figures["false_accepts_per_hour"],
        running_speech_false_accepts_per_hour=figures["running_speech_false_accepts_per_hour"],
        decision=decision, ms_per_window=latency_ms(load_model(path)), recipe=args.recipe, default=args.default,
    )  # fmt: skip
    cards = [c for c in bundled_models() if c.name != card.name]
    if card.default:
        cards = [ModelCard(**{**asdict(c), "default": False}) for c in cards]
    write_text(CARDS_FILE, json.dumps([asdict(c) for c in [card, *cards]], indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size:,} bytes) and its card in {CARDS_FILE}: {card.summary()}")


if __name__ == "__main__":
    main()
