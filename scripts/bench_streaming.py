"""Today's engine against a streaming model, side by side in one run: latency, speed, accuracy, false accepts.

Each row is a model and a detector setting, all at the same ``--threshold``:

* **found / wrong**: ``kws evaluate-stream``'s correct and wrong rates on ``--commands`` (a stream of real
  speakers saying the ten commands; truth CSV beside it), and **FA/h**, the false accepts per hour on
  ``--other-words`` (the same speakers saying only other words: every detection is one,
  :attr:`pipeline.stream_eval.StreamStats.false_accepts`);
* **delay**: from the end of each found word to its emission, in stream time, with the microphone demo's
  50 ms blocks (pipeline/live.py's callback path without the clock), median and p90 over every found word of
  the commands stream; and the **wall-clock** median when ``--realtime-seconds`` of it are played in real
  time through that path (scripts/bench_latency.py's measure);
* **speed**: real-time factor on one thread over ``--seconds`` of audio in 6.4 s blocks (``kws transcribe``'s),
  the rows taking turns, median of ``--runs``;
* **trade-off**: found and FA/h of each row at every one of ``--thresholds``, from the offline reference (the
  engine's own scores, held equal to it by the tests) and the decision rule, so rows compare at equal false
  accepts.

Usage (the streams of scripts/crossval.py's fold 0, whose speakers neither model trained on)::

    python scripts/bench_streaming.py --windowed runs/crossval/long/fold0/checkpoints/best.ckpt \\
        --streaming runs/crossval/causal/fold0/checkpoints/best.ckpt \\
        --commands runs/crossval/streams/commands-0of5.wav --other-words runs/crossval/streams/other-words-0of5.wav
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.console import run_script
from pipeline.data.streams import read_truth, truth_path
from pipeline.measure import bench_audio, delays, play, stream_once
from pipeline.runtime.audio import SAMPLE_RATE, read_audio, save_audio
from pipeline.runtime.spotter import CHUNK_SAMPLES, transcribe_source
from pipeline.runtime.streaming import Classifier, Detector
from pipeline.stream_eval import TOLERANCE_MS, score_stream, tune, vocabulary
from pipeline.train.model import load_model

THRESHOLD = 0.8  # the bundled model's
THRESHOLDS = "0.7,0.8,0.85,0.9,0.95"
ROWS = (  # name, which model, stride and smoothing (None: the model's defaults), hold
    ("window model, 400 ms stride, emit at the run's end (kws transcribe today)", "windowed", None, None, None),
    ("window model, 400 ms stride, emit when decided (kws live today)", "windowed", None, None, 0.0),
    ("streaming model, 10 ms step, emit when decided", "streaming", None, None, 0.0),
    ("streaming model, 10 ms step, emit at the run's end", "streaming", None, None, None),
    ("streaming model, 20 ms step, 300 ms smoothing, emit when decided", "streaming", 20.0, 300.0, 0.0),
)


@dataclass
class Row:
    name: str
    detector: Detector
    cells: dict[str, str]


def _ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.percentile(values, q)):.0f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windowed", required=True, help="checkpoint of a window-by-window model (today's kind)")
    parser.add_argument("--streaming", required=True, help="checkpoint of a streaming model (model.causal)")
    parser.add_argument("--commands", required=True, help="stream of command words with its truth CSV beside it")
    parser.add_argument("--other-words", required=True, help="stream of other words only: false accepts")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"every row's (default: {THRESHOLD})")
    parser.add_argument("--thresholds", default=THRESHOLDS, help=f"of the trade-off table (default: {THRESHOLDS})")
    parser.add_argument("--seconds", type=float, default=120.0, help="audio of the speed runs (default: 120)")
    parser.add_argument("--runs", type=int, default=5, help="speed runs per row; the median is reported")
    parser.add_argument(
        "--realtime-seconds",
        type=float,
        default=60.0,
        help="of the commands stream played in real time for the wall-clock delay (0: skip)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    models: dict[str, Classifier] = {"windowed": load_model(args.windowed), "streaming": load_model(args.streaming)}
    if not models["streaming"].streaming or models["windowed"].streaming:
        parser.error("--streaming must be a causal model's checkpoint and --windowed another's")
    rows = [Row(name, Detector(models[kind], args.threshold, stride, smooth, hold_ms=hold), {})
            for name, kind, stride, smooth, hold in ROWS]  # fmt: skip
    truth = read_truth(truth_path(args.commands))
    words = vocabulary(models["windowed"])
    for row in rows:
        commands = transcribe_source(row.detector, args.commands, CHUNK_SAMPLES)
        stats = score_stream(commands.words, truth, words, commands.seconds, TOLERANCE_MS / 1000)
        noise = transcribe_source(row.detector, args.other_words, CHUNK_SAMPLES)
        others = score_stream(noise.words, read_truth(truth_path(args.other_words)), words, noise.seconds,
                              TOLERANCE_MS / 1000)  # fmt: skip
        heard, ends, delivered = play(row.detector, Path(args.commands), realtime=False)
        stream_delays = [d.stream for d in delays(heard, truth, words, ends, delivered, TOLERANCE_MS / 1000)]
        row.cells |= {"found": f"{stats.percent(stats.correct):.1f} %", "wrong": f"{stats.percent(stats.wrong):.1f} %",
                      "FA/h": f"{others.false_accepts_per_hour:.1f}",
                      "delay median / p90 (ms)": f"{_ms(stream_delays, 50)} / {_ms(stream_delays, 90)}"}  # fmt: skip
    if args.realtime_seconds > 0:
        excerpt = read_audio(args.commands, SAMPLE_RATE)[: int(args.realtime_seconds * SAMPLE_RATE)]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "excerpt.wav"
            save_audio(path, excerpt)
            for row in rows:
                heard, ends, delivered = play(row.detector, path, realtime=True)
                wall = [d.wall for d in delays(heard, truth, words, ends, delivered, TOLERANCE_MS / 1000)]
                row.cells["wall-clock delay median (ms)"] = _ms(wall, 50)
    audio = bench_audio(args.seconds)
    speeds: dict[str, list[float]] = {row.name: [] for row in rows}
    for _ in range(args.runs):
        for row in rows:
            speeds[row.name].append(args.seconds / stream_once(row.detector, audio, CHUNK_SAMPLES))
    for row in rows:
        row.cells["speed, one thread"] = f"{statistics.median(speeds[row.name]):.0f}x"
    thresholds = [float(t) for t in args.thresholds.split(",")]
    trade_off = {row.name: trade_offs(row.detector, args.commands, args.other_words, thresholds) for row in rows}
    print(
        f"threshold {args.threshold:g}; {len(truth)} truth words in {args.commands}; "
        f"window model {args.windowed}; streaming model {args.streaming}\n"
    )
    columns = list(rows[0].cells)
    print("| engine | " + " | ".join(columns) + " |\n|" + " --- |" * (len(columns) + 1))
    for row in rows:
        print(f"| {row.name} | " + " | ".join(row.cells.get(c, "-") for c in columns) + " |")
    print("\n| engine: found / FA per hour at threshold | " + " | ".join(f"{t:g}" for t in thresholds) + " |\n|"
          + " --- |" * (len(thresholds) + 1))  # fmt: skip
    for row in rows:
        print(f"| {row.name} | " + " | ".join(f"{found:.1f} % / {fa:.0f}" for found, fa in trade_off[row.name]) + " |")
    return 0


def trade_offs(
    detector: Detector, commands: str, other_words: str, thresholds: list[float]
) -> list[tuple[float, float]]:
    """Per threshold, the share of command words found correctly and the false accepts per hour on the
    other-words stream, with the detector's other settings: ``tune`` on each stream."""
    model, s = detector.model, detector.settings

    def by_threshold(path: str) -> dict:
        rows = tune(
            model,
            read_audio(path, model.sample_rate),
            read_truth(truth_path(path)),
            model.sample_rate,
            TOLERANCE_MS / 1000,
            (s.stride_ms,),
            thresholds,
            (s.smooth_ms,),
            (s.suppression_ms,),
            s.hold_ms,
        )
        return {settings.threshold: stats for settings, stats in rows}

    found, noise = by_threshold(commands), by_threshold(other_words)
    return [(found[t].percent(found[t].correct), noise[t].false_accepts_per_hour) for t in thresholds]


if __name__ == "__main__":
    run_script(main)
