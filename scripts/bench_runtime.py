"""The deployment figures, side by side in one run: the torch-free runtime against the PyTorch path.

* start-up: wall time and peak memory of ``kws transcribe`` on a 1 s file (median of ``--runs`` processes),
  through the checkpoint with PyTorch (what every run paid before ``kws export``), through the exported file
  (``--model``), and through the bundled model (no flag);
* throughput on one thread on ``--seconds`` of audio at the default 400 ms stride: the exported model, the
  engine as it was before (PyTorch front end, acoustic model in ONNX Runtime) and eager PyTorch;
* the int8 variant (``kws export --int8``) against float: speed per window and, with ``--check-data``, accuracy.

Usage::

    python scripts/bench_runtime.py [--ckpt pipeline/runtime/weights/kws12.ckpt] [--check-data data/synth_gsc12]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.console import run_script
from pipeline.measure import bench_audio, stream_once  # the same audio and loop as the engine benchmark
from pipeline.runtime.audio import SAMPLE_RATE, save_audio
from pipeline.runtime.bundled import WEIGHTS_DIR
from pipeline.runtime.onnx_model import OnnxModel
from pipeline.runtime.spotter import CHUNK_SAMPLES
from pipeline.runtime.streaming import Detector
from pipeline.train.export import accuracy, labelled_clips
from pipeline.train.model import load_model

# ``kws`` itself (its console script runs the same two lines), reporting the process's peak resident memory
KWS_REPORTING_MEMORY = """
import sys
from pipeline.cli import main
status = main(sys.argv[1:])
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")), file=sys.stderr)
sys.exit(status)
"""


def kws_run(args: list[str]) -> tuple[float, float]:
    """Run ``kws ARGS`` in a new process; return its wall time (s) and peak resident memory (MiB)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", KWS_REPORTING_MEMORY, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: kws {' '.join(args)} failed: {proc.stderr[-300:]}")
    return wall, int(proc.stderr.split()[-1]) / 1024


def throughputs(models: dict[str, object], audio: np.ndarray, runs: int) -> dict[str, float]:
    """Median real-time factor of the streaming engine over ``audio`` in 6.4 s chunks, for each model; the
    models take turns, run by run, so that a slow spell of the machine does not fall on one of them."""
    detectors = {name: Detector(model) for name, model in models.items()}
    factors: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, detector in detectors.items():
            factors[name].append(len(audio) / SAMPLE_RATE / stream_once(detector, audio, CHUNK_SAMPLES))
    return {name: statistics.median(f) for name, f in factors.items()}


class TorchFrontEndOnnxEncoder:
    """The engine before the export: features by PyTorch, the acoustic model in ONNX Runtime."""

    def __init__(self, ckpt: str) -> None:
        self.torch, self.onnx = load_model(ckpt, runtime="torch"), load_model(ckpt)
        for name in ("labels", "sample_rate", "win_length", "hop_length", "n_features"):
            setattr(self, name, getattr(self.torch, name))
        self.features, self.logits = self.torch.features, self.onnx.logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=str(WEIGHTS_DIR / "kws12.ckpt"), help="checkpoint (default: the bundled one)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement; the median is reported")
    parser.add_argument("--seconds", type=float, default=120.0, help="audio of the throughput runs (default: 120)")
    parser.add_argument("--check-data", help="Speech Commands-layout folder: int8 and float accuracy on its test split")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "model.onnx"
        kws_run(["export", args.ckpt, "--out", str(export), "--int8"])
        wav = Path(tmp) / "one_second.wav"
        save_audio(wav, bench_audio(1.0))
        print("| `kws transcribe` on a 1 s file | wall time (median) | peak memory (median) |\n| --- | --- | --- |")
        for name, extra in (("`--ckpt` (checkpoint, PyTorch)", ["--ckpt", args.ckpt]),
                            ("`--model` (exported file, no PyTorch)", ["--model", str(export)]),
                            ("bundled model (no flag, no PyTorch)", [])):  # fmt: skip
            runs = [kws_run(["transcribe", str(wav), *extra]) for _ in range(args.runs)]
            print(f"| {name} | {statistics.median(r[0] for r in runs):.2f} s "
                  f"| {statistics.median(r[1] for r in runs):.0f} MiB |")  # fmt: skip

        float_model, int8_model = OnnxModel(export), OnnxModel(export.with_suffix(".int8.onnx"))
        audio = bench_audio(args.seconds)
        print(f"\n| engine, one thread, {args.seconds:g} s, 400 ms stride | real time |\n| --- | --- |")
        models = {"exported model (ONNX Runtime front end and model)": float_model,
                  "before: PyTorch front end, ONNX Runtime model": TorchFrontEndOnnxEncoder(args.ckpt),
                  "eager PyTorch (`--runtime torch`)": load_model(args.ckpt, runtime="torch"),
                  "int8 variant": int8_model}  # fmt: skip
        for name, factor in throughputs(models, audio, args.runs).items():
            print(f"| {name} | {factor:.0f}x |")
        if args.check_data:
            clips = labelled_clips(float_model, args.check_data)
            print(f"\naccuracy on the test split of {args.check_data} ({len(clips[1])} clips): "
                  f"float {accuracy(float_model, *clips):.2%}, int8 {accuracy(int8_model, *clips):.2%}")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
