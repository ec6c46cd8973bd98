"""How sure is a model of the command words of a stream? The ceiling of any decision rule on it.

For each command word of each stream (a ``kws make-stream`` WAV with its truth CSV), the windows that hold the
word's centre are scored (``pipeline.runtime.streaming.offline_scores`` at ``--stride-ms``, no smoothing) and two things
are kept: whether the word's class is the top class of one of them, and its highest probability there. A rule with
threshold t finds at most the share of words whose peak exceeds t, whatever its smoothing and patience.

Example:
    python scripts/word_peaks.py --ckpt runs/crossval/kws12/fold0/checkpoints/best.ckpt \\
        runs/benchmark/streams/real-commands-fold0of5-{20,10,5}dB.wav
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.console import run_script
from pipeline.data.streams import read_truth, truth_path
from pipeline.errors import KWSError
from pipeline.runtime.audio import read_audio
from pipeline.runtime.spotter import open_model
from pipeline.runtime.streaming import Classifier, offline_scores, windowing_of

LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95)  # thresholds the peaks are counted above
STRIDE_MS = 100.0


def word_peaks(model: Classifier, stream: Path, stride_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Per command word of ``stream``: whether its class is top-1 in a window holding its centre, and its peak."""
    labels = list(model.labels)
    probs = offline_scores(model, read_audio(stream, model.sample_rate), stride_ms)
    step, window = stride_ms / 1000, windowing_of(model, stride_ms).samples / model.sample_rate
    top, peak = [], []
    for word in read_truth(truth_path(stream)):
        if word.word not in labels or word.word.startswith("_"):
            continue
        centre, column = (word.start + word.end) / 2, labels.index(word.word)
        rows = probs[max(0, int((centre - window) / step)) : int(centre / step) + 1]
        top.append(bool((rows.argmax(1) == column).any()))
        peak.append(float(rows[:, column].max()))
    return np.array(top), np.array(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("streams", nargs="+", type=Path, help="stream WAV files, each with its truth CSV beside it")
    parser.add_argument("--ckpt", required=True, help="checkpoint, export (.onnx) or bundled model name")
    parser.add_argument("--stride-ms", type=float, default=STRIDE_MS, help=f"window step (default: {STRIDE_MS:g})")
    args = parser.parse_args()
    for stream in args.streams:
        if not truth_path(stream).exists():
            raise KWSError(f"{stream} has no truth CSV beside it (kws make-stream writes one)")
    model, _ = open_model(args.ckpt)
    rows = []
    for stream in args.streams:  # every stream scored before the table is printed: a bad flag is one line
        top, peak = word_peaks(model, stream, args.stride_ms)
        shares = " | ".join(f"{100 * np.mean(peak > t):.1f} %" for t in LEVELS)
        rows.append(f"| {stream.name} | {len(top)} | {100 * np.mean(top):.1f} % | {shares} |")
    print("| stream | command words | top class in a window | " + " | ".join(f"peak > {t:g}" for t in LEVELS) + " |")
    print("| --- |" + " --- |" * (2 + len(LEVELS)))
    print("\n".join(rows))


if __name__ == "__main__":
    run_script(main)
