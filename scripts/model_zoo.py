"""Accuracy on held-out real speakers for each model family, with its size and speed (docs/accuracy.md, "Model
families").

Each model is trained with ``configs/real_12.yaml`` on the TTS corpus plus 40 % of the real speakers, then
tested on the other 50 % (``kws test``). Beside the accuracy: parameters, multiply-accumulates per 1 s window
(the acoustic model, counted by ``torch.utils.flop_counter``) and the median latency of one 1 s window
(front end and model) on one thread, in eager PyTorch and in ONNX Runtime. Interrupted runs resume.

Example:
    python scripts/model_zoo.py --synth data/synth_gsc12 --real ../shared/data/speech_commands_v0.02_test_part_a
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.console import run_script
from pipeline.measure import REAL_SPLIT, accuracy, latency_ms, train
from pipeline.runtime.audio import CLIP_SAMPLES
from pipeline.train.model import load_model

MFCC_40 = ["--model.features.n_mels=40", "--model.features.n_mfcc=40"]  # BC-ResNet's, TC-ResNet's and DS-CNN's
MFCC_64 = ["--model.features.n_mels=64", "--model.features.n_mfcc=64"]  # MatchboxNet's
MODELS = {
    "bcresnet-1": ["--model.model.name=bcresnet", "--model.model.width=1", *MFCC_40],
    "bcresnet-3": ["--model.model.name=bcresnet", "--model.model.width=3", *MFCC_40],
    "tcresnet-8": ["--model.model.name=tcresnet", "--model.model.size=8", *MFCC_40],
    "tcresnet-14": ["--model.model.name=tcresnet", "--model.model.size=14", *MFCC_40],
    "matchboxnet-3x1x64": ["--model.model.name=matchboxnet", "--model.model.size=3x1x64", *MFCC_64],
    "dscnn-s": ["--model.model.name=dscnn", "--model.model.size=s", *MFCC_40],
}


def size_and_speed(ckpt: Path) -> tuple[int, float, float, float]:
    """Parameters, MACs per window, eager and ONNX latency (ms) of a checkpoint's model."""
    torch.set_num_threads(1)
    model = load_model(ckpt, runtime="torch")
    params = sum(p.numel() for p in model.encoder.parameters())
    features = model.front_end(torch.zeros(1, CLIP_SAMPLES))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.encoder(features)
    eager = latency_ms(model)
    onnx = latency_ms(load_model(ckpt, runtime="onnx"))
    return params, counter.get_total_flops() / 2, eager, onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synth", required=True, help="TTS corpus made by kws synth")
    parser.add_argument("--real", required=True, help="real clips (official test-archive or Google layout)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of real_12.yaml")
    args = parser.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    extra = [f"--trainer.max_epochs={args.epochs}"] if args.epochs else []
    held_out = [f"--data.root={args.real}", "--data.split=hash", *REAL_SPLIT]
    rows = []
    for name in names:
        ckpt = train(f"zoo-{name}", f"--data.root=[{args.synth}, {args.real}]", *MODELS[name], *extra, config="real_12")
        acc, clips = accuracy(ckpt, *held_out)
        rows.append((name, acc, clips, *size_and_speed(ckpt)))
    print(
        "\n| model | held-out real speakers | clips | parameters | MACs / window | ms / window (torch) "
        "| ms / window (ONNX) |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    for name, acc, clips, params, macs, eager, onnx in rows:
        print(f"| {name} | {acc:.1%} | {clips} | {params:,} | {macs / 1e6:.1f} M | {eager:.2f} | {onnx:.2f} |")


if __name__ == "__main__":
    run_script(main)
