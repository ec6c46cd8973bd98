"""Throughput and memory of streaming transcription on one CPU thread.

Prints, for a checkpoint:

* the streaming engine's speed as a multiple of real time (median of several runs over the same audio),
  in memory and end to end from a WAV file (decoding included);
* a naive baseline that, at every stride, cuts the window, recomputes its features and runs the model on it
  alone, and the ratio between the two;
* for a streaming model (a causal MatchboxNet, the speech embedding's ring), also the same engine running it
  window by window at ``STRIDE_MS``, as it ran before it streamed (the embedding: each window's 9 embeddings
  anew);
* the resident memory (RSS, sampled from /proc/self/status) while ``kws transcribe`` code reads a generated
  1-hour WAV file: it must stay flat.

Usage: ``python scripts/bench_transcribe.py [--ckpt runs/quickstart/checkpoints/best.ckpt]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipeline.console import run_script
from pipeline.measure import bench_audio, stream_once
from pipeline.runtime.audio import SAMPLE_RATE
from pipeline.runtime.decision import STRIDE_MS
from pipeline.runtime.onnx_model import RUNTIMES
from pipeline.runtime.spotter import CHUNK_SAMPLES, transcribe_source
from pipeline.runtime.streaming import Classifier, Detector, is_streaming, window_probs, windowing_of
from pipeline.train.model import load_model

DEFAULT_CKPT = "runs/quickstart/checkpoints/best.ckpt"
TARGET = 500.0  # goal, times real time
RSS_INTERVAL = 0.2  # seconds between memory samples


def naive_once(model: Classifier, audio: np.ndarray, stride_ms: float) -> float:
    """Seconds for the naive loop: features and model of the whole window, one window per stride."""
    w = windowing_of(model, stride_ms)
    start = time.perf_counter()
    for s in range(0, len(audio) - w.samples + 1, w.stride):
        window_probs(model, model.features(audio[s : s + w.samples])[None])
    return time.perf_counter() - start


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_long_wav(path: Path, seconds: float, block_seconds: float = 60.0) -> None:
    """Write a long 16-bit WAV block by block (never the whole signal in memory)."""
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as f:
        for k in range(int(np.ceil(seconds / block_seconds))):
            f.write(bench_audio(min(block_seconds, seconds - k * block_seconds), seed=k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help=f"checkpoint (default: {DEFAULT_CKPT})")
    own = f"the model's own step if it streams, else {STRIDE_MS:g}"
    parser.add_argument("--stride-ms", type=float, help=f"detector stride (default: {own})")
    parser.add_argument("--chunk-samples", type=int, default=CHUNK_SAMPLES, help="samples per push / block read")
    parser.add_argument("--seconds", type=float, default=120.0, help="audio length of the throughput runs")
    parser.add_argument("--runs", type=int, default=5, help="throughput runs (the median is reported)")
    parser.add_argument("--naive-seconds", type=float, default=20.0, help="audio length of the naive baseline")
    parser.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0], help="acoustic model runtime")
    parser.add_argument("--hour-minutes", type=float, default=60.0, help="length of the memory test file")
    args = parser.parse_args()

    torch.set_num_threads(1)
    module = load_model(args.ckpt, args.runtime)
    detector = Detector(module, stride_ms=args.stride_ms)
    stride_ms = detector.settings.stride_ms
    audio = bench_audio(args.seconds)

    def real_time(detector: Detector) -> tuple[float, float]:
        stream_once(detector, audio[: SAMPLE_RATE * 5], args.chunk_samples)  # warm-up
        times = [stream_once(detector, audio, args.chunk_samples) for _ in range(args.runs)]
        return args.seconds / statistics.median(times), statistics.median(times)

    engine_x, median = real_time(detector)
    short = audio[: int(args.naive_seconds * SAMPLE_RATE)]
    naive_x = args.naive_seconds / statistics.median(naive_once(module, short, stride_ms) for _ in range(3))
    w = detector.windowing
    print(
        f"checkpoint {args.ckpt} ({args.runtime}), "
        f"stride {stride_ms:g} ms ({SAMPLE_RATE / w.stride:g} windows per second), chunk {args.chunk_samples}"
    )
    print(f"streaming engine : {engine_x:7.1f} x real time (median of {args.runs} x {args.seconds:g} s, 1 thread)")
    if is_streaming(module):
        windowed = copy.copy(module)
        windowed.streaming = False  # the same model and engine, window by window
        windowed_x, _ = real_time(Detector(windowed, stride_ms=STRIDE_MS))
        print(f"window by window : {windowed_x:7.1f} x real time at a {STRIDE_MS:g} ms stride "
              f"(the streaming engine is {engine_x / windowed_x:.1f} x faster at {STRIDE_MS / stride_ms:g} x the "
              "decisions)")  # fmt: skip
    print(f"naive baseline   : {naive_x:7.1f} x real time (features + model of each window alone)")
    print(f"speed-up         : {engine_x / naive_x:7.1f} x")
    print(
        f"goal {TARGET:g} x real time: {'reached' if engine_x >= TARGET else 'not reached'}; "
        f"engine time per window {1000 * median / (args.seconds * SAMPLE_RATE / w.stride):.2f} ms"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.wav"
        write_long_wav(path, args.hour_minutes * 60)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_mib())
                time.sleep(RSS_INTERVAL)

        base = rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        result = transcribe_source(detector, str(path), args.chunk_samples)
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    quarter = max(1, len(samples) // 4)
    first, last = statistics.median(samples[:quarter]), statistics.median(samples[-quarter:])
    print(
        f"{args.hour_minutes:g}-minute file: {result.seconds / elapsed:.1f} x real time end to end, "
        f"{len(result.words)} detections"
    )
    print(
        f"RSS before {base:.1f} MiB, peak {max(samples):.1f} MiB; median of the first quarter of the run "
        f"{first:.1f} MiB, of the last quarter {last:.1f} MiB (growth {last - first:+.1f} MiB)"
    )


if __name__ == "__main__":
    run_script(main)
