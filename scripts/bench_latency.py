"""Latency of the live demo: from the end of a spoken word to its detection, through the demo's file path.

Builds a stream of the model's words over background noise with ``kws make-stream``'s machinery (the truth
gives each word's end), plays it **in real time** through the demo's capture callback (pipeline/live.py:
the producer thread calls the callback with 50 ms blocks, paced by the wall clock, exactly as PortAudio
would), and matches each detection to a truth word (same word, centres within ``--tolerance-ms``, as
``kws evaluate-stream`` matches). For every matched word it reports:

* **wall-clock delay**: the ``time.monotonic()`` at which the detection came out of the detector, minus the
  time at which the callback delivered the block holding the word's last sample (queueing and processing
  included; what a user feels, less the sound card's own buffering);
* **stream-time delay**: the stream position at which the detection was emitted (the end of the block whose
  processing emitted it) minus the word's end: the engine's algorithmic delay (at most one window plus one
  stride plus one block, see pipeline/runtime/streaming.py).

The run takes as long as the stream (``--seconds``, 40 by default) plus the start-up. Usage::

    python scripts/bench_latency.py --source ../shared/data/speech_commands_v0.02_test_part_a \\
        --noise ../shared/data/speech_commands_background_noise [--ckpt runs/quickstart/checkpoints/best.ckpt]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from pipeline.console import run_script
from pipeline.data.streams import make_stream
from pipeline.measure import delays, play
from pipeline.runtime.audio import SAMPLE_RATE, save_audio
from pipeline.runtime.capture import BLOCK_MS
from pipeline.runtime.streaming import THRESHOLD, Detector
from pipeline.stream_eval import vocabulary
from pipeline.train.model import load_model

DEFAULT_CKPT = "runs/quickstart/checkpoints/best.ckpt"
SECONDS = 40.0  # stream length, played in real time
SNR_DB = 20.0
TOLERANCE_MS = 500.0  # as kws evaluate-stream


def _ms(values: list[float]) -> str:
    return (f"median {1000 * statistics.median(values):.0f} ms (min {1000 * min(values):.0f}, "
            f"p90 {1000 * float(np.percentile(values, 90)):.0f}, max {1000 * max(values):.0f})")  # fmt: skip


def main() -> int:
    """Build the stream, play it in real time, print the delays; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help=f"model checkpoint (default: {DEFAULT_CKPT})")
    parser.add_argument("--source", required=True, help="Speech Commands-layout folder (e.g. a kws synth corpus)")
    parser.add_argument("--noise", help="folder of background recordings (default: SOURCE/_background_noise_)")
    parser.add_argument("--split", default="test", help="clips of this split of SOURCE (default: test)")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"stream length (default: {SECONDS:g})")
    parser.add_argument("--snr-db", type=float, default=SNR_DB, help=f"speech-to-noise ratio (default: {SNR_DB:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the stream (default: 0)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"detector threshold (default: {THRESHOLD})")
    parser.add_argument(
        "--hold-ms",
        type=float,
        help="emit a word at most this long after it is decided (default: when its run of windows ends)",
    )
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        default=TOLERANCE_MS,
        help=f"largest distance between a detection's and a word's centre (default: {TOLERANCE_MS:g})",
    )
    args = parser.parse_args()

    module = load_model(args.ckpt)
    words = vocabulary(module)
    audio, truth = make_stream(args.source, args.noise, args.seconds / 60, args.snr_db, seed=args.seed,
                               words=sorted(words), split=args.split)  # fmt: skip
    detector = Detector(module, threshold=args.threshold, hold_ms=args.hold_ms)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.wav"
        save_audio(path, audio)
        heard, ends, delivered = play(detector, path)
    found = delays(heard, truth, words, ends, delivered, args.tolerance_ms / 1000)
    print(
        f"checkpoint {args.ckpt}; stream of {len(audio) / SAMPLE_RATE:.1f} s from {args.source}, "
        f"played in real time in {BLOCK_MS:g} ms blocks; {len(truth)} words, {len(found)} detected, "
        f"{len(heard) - len(found)} other detections"
    )
    if not found:
        print("no word was detected: no delay to report")
        return 1
    print(f"wall-clock delay  (emitted - delivery of the word's end): {_ms([d.wall for d in found])}")
    print(f"stream-time delay (emit position - word end):           {_ms([d.stream for d in found])}")
    return 0


if __name__ == "__main__":
    run_script(main)
