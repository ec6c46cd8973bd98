"""What the scripts of ``scripts/`` measure with: synthetic audio for speed runs, the engine's timed loop, the
per-window latency of a model, the microphone demo's path played from a file with the delay of each word, and a
recipe trained and tested through ``kws`` itself. One copy here, so that no script imports another.

Example:
    >>> audio = bench_audio(3.0)
    >>> audio.shape, audio.dtype
    ((48000,), dtype('float32'))
"""

from __future__ import annotations

import bisect
import csv
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cli import main as kws
from pipeline.data.streams import TruthWord
from pipeline.errors import KWSError
from pipeline.runtime.audio import CLIP_SAMPLES, SAMPLE_RATE
from pipeline.runtime.capture import BLOCK_MS, QUEUE_SECONDS, AudioTap, FileSource, Heard, Session
from pipeline.runtime.streaming import Classifier, Detector, window_probs

LATENCY_RUNS, LATENCY_WARMUP = 200, 20  # timed and untimed windows of latency_ms
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# 40 % of the real speakers train, 10 % validate, 50 % test; salted, as the official test archive's speakers all
# share one band of the standard hash
REAL_SPLIT = ["--data.validation_percentage=10", "--data.testing_percentage=50", "--data.hash_salt=resplit:"]


def bench_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a tone burst every second: content does not change the cost, but keeps decisions busy."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 0.02, int(seconds * SAMPLE_RATE)).astype(np.float32)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    for start in range(0, len(audio) - len(t), SAMPLE_RATE * 2):
        audio[start : start + len(t)] += 0.3 * np.sin(2 * np.pi * rng.uniform(300, 1500) * t).astype(np.float32)
    return audio


def stream_once(detector: Detector, audio: np.ndarray, chunk: int) -> float:
    """Seconds to push ``audio`` in ``chunk``-sample pieces and flush."""
    start = time.perf_counter()
    for i in range(0, len(audio), chunk):
        detector.push(audio[i : i + chunk])
    detector.flush()
    return time.perf_counter() - start


def latency_ms(model: Classifier) -> float:
    """Median milliseconds to score one 1 s window (front end and model), after a warm-up."""
    window = np.random.default_rng(0).normal(0, 0.1, (1, CLIP_SAMPLES)).astype(np.float32)
    times = []
    for i in range(LATENCY_RUNS + LATENCY_WARMUP):
        start = time.perf_counter()
        window_probs(model, model.features(window))
        if i >= LATENCY_WARMUP:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


@dataclass(frozen=True)
class Delay:
    """The delays of one detected word, in seconds: by the wall clock from the delivery of the block holding the
    word's end, and in stream time from the word's end."""

    word: str
    wall: float
    stream: float


def play(detector: Detector, path: Path, realtime: bool = True) -> tuple[list[Heard], list[float], list[float]]:
    """Play ``path`` through the demo's callback path; return the detections and, per block, its end (seconds of
    stream) and its delivery time (``time.monotonic()``)."""
    tap = AudioTap(maxsize=int(QUEUE_SECONDS * 1000 / BLOCK_MS))
    source = FileSource(path, tap, realtime=realtime)
    ends: list[float] = []
    delivered: list[float] = []

    def on_block(end: float, at: float) -> None:
        ends.append(end)
        delivered.append(at)

    session = Session(detector, tap, source.samplerate, on_block=on_block)
    source.start()
    try:
        session.run(threading.Event())
        session.finish()
    finally:
        source.stop()
    if source.error:
        raise source.error
    return session.heard, ends, delivered


def delays(heard: list[Heard], truth: list[TruthWord], words: set[str], ends: list[float], delivered: list[float],
           tolerance_s: float) -> list[Delay]:  # fmt: skip
    """Match each truth word of ``words`` to the first unused detection of the same word whose centre lies within
    ``tolerance_s`` of its centre; the delays of the matched words."""
    used: set[int] = set()
    out = []
    for w in truth:
        if w.word not in words:
            continue
        centre = (w.start + w.end) / 2
        for i, h in enumerate(heard):
            d = h.detection
            if i not in used and d.word == w.word and abs((d.start + d.end) / 2 - centre) <= tolerance_s:
                used.add(i)
                block = min(bisect.bisect_left(ends, w.end), len(ends) - 1)  # the block holding the word's end
                out.append(Delay(w.word, h.emitted_at - delivered[block], h.position - w.end))
                break
    return out


def train(run: str, *args: str, config: str = "quickstart") -> Path:
    """``kws fit`` of ``configs/<config>.yaml`` with overrides (resuming an interrupted run); its best.ckpt.

    Raises:
        KWSError: the training failed.
    """
    run_dir = Path("runs") / run
    resume = ["--ckpt_path=last"] if (run_dir / "config.yaml").exists() else []
    if kws(["fit", "--config", str(CONFIGS / f"{config}.yaml"), f"--run={run}", *args, *resume]) != 0:
        raise KWSError(f"training {run} failed")
    return run_dir / "checkpoints" / "best.ckpt"


def accuracy(ckpt: Path, *data_args: str) -> tuple[float, int]:
    """``kws test`` of ``ckpt``, read back from its confusion matrix: (accuracy, clips).

    Raises:
        KWSError: the test failed.
    """
    if kws(["test", "--ckpt_path", str(ckpt), *data_args]) != 0:
        raise KWSError(f"kws test failed for {ckpt}")
    right, clips, _ = read_confusion(ckpt)
    return right, clips


def read_confusion(ckpt: Path) -> tuple[float, int, dict[str, float]]:
    """Accuracy, clips and per-label recall from the confusion matrix ``kws test`` wrote beside ``ckpt``."""
    from pipeline.train.report import CONFUSION_CSV  # the training stack, loaded only once a test has run

    with open(ckpt.parent / CONFUSION_CSV) as f:
        rows = list(csv.reader(f))
    labels = rows[0][1:]
    counts = [[int(v) for v in row[1:]] for row in rows[1:]]
    total = sum(map(sum, counts))
    recall = {label: counts[i][i] / max(1, sum(counts[i])) for i, label in enumerate(labels)}
    return sum(counts[i][i] for i in range(len(counts))) / max(total, 1), total, recall
