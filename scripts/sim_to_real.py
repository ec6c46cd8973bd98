"""Accuracy of TTS-trained models on held-out TTS voices and on real speakers (docs/tts_corpus.md's figures).

1. a model trained on the TTS corpus only (``--synth-ckpt``, e.g. the quickstart's, or trained here),
   tested on the corpus's held-out voices, on every real clip, and on the real held-out speakers;
2. a model trained on the TTS corpus plus one part of the real speakers (split by speaker hash),
   tested on the other part.

Example:
    python scripts/sim_to_real.py --synth data/synth_gsc12 \\
        --real ../shared/data/speech_commands_v0.02_test_part_a \\
        --synth-ckpt runs/quickstart/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.console import run_script
from pipeline.measure import REAL_SPLIT, accuracy, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synth", required=True, help="TTS corpus made by kws synth")
    parser.add_argument("--real", required=True, help="real clips in the official test-archive layout")
    parser.add_argument("--synth-ckpt", help="checkpoint trained on --synth only (default: train one here)")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs of the runs")
    parser.add_argument("--noise", help="background-noise folder for training augmentation")
    args = parser.parse_args()
    extra = [f"--trainer.max_epochs={args.epochs}"] if args.epochs else []
    extra += [f"--data.noise_dir={args.noise}"] if args.noise else []

    synth_ckpt = Path(args.synth_ckpt) if args.synth_ckpt else train("s2r-synth", f"--data.root={args.synth}", *extra)
    real_heldout = [f"--data.root={args.real}", "--data.split=hash", *REAL_SPLIT]
    figures = {
        "TTS only -> held-out TTS voices": accuracy(synth_ckpt, f"--data.root={args.synth}"),
        "TTS only -> all real speakers": accuracy(synth_ckpt, f"--data.root={args.real}"),
        "TTS only -> held-out real speakers": accuracy(synth_ckpt, *real_heldout),
    }
    mix_ckpt = train(
        "s2r-mix", f"--data.root=[{args.synth}, {args.real}]", "--data.split=[auto, hash]", *REAL_SPLIT, *extra
    )
    figures["TTS + 40% of real speakers -> held-out real speakers"] = accuracy(mix_ckpt, *real_heldout)
    print("\n| model -> test set | accuracy | clips |\n| --- | --- | --- |")
    for name, (acc, n) in figures.items():
        print(f"| {name} | {acc:.1%} | {n} |")


if __name__ == "__main__":
    run_script(main)
