"""Data-path throughput: clips per second delivered as ready feature batches, against a per-item baseline.

* ``cached features``: clips decoded once into the int16 cache, features per batch (the baseline's work);
* ``cached path``: the project's training path: the same plus augmentation per batch (shift, gain, reverb,
  band-limit, noise).
* ``baseline``: the way torchaudio's ``SPEECHCOMMANDS`` is usually used: each item decoded from its file
  and turned into MFCC on its own, in DataLoader worker processes.

All produce the same features (40 MFCC x 98 frames) for the same number of clips, the cache built before
timing; the medians of ``--runs`` passes are compared in one process.

Example:
    python scripts/bench_data.py --root data/synth_gsc12
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.console import run_script
from pipeline.data.speech_commands import scan
from pipeline.runtime.audio import fit_length, read_audio
from pipeline.train.augment import AugmentConfig
from pipeline.train.datamodule import SpeechCommandsDataModule
from pipeline.train.features import FrontEnd

AUGMENT = AugmentConfig(gain_db=(-10.0, 5.0), reverb_prob=0.3, band_prob=0.3)


class PerItemMFCC(Dataset):
    """Baseline: decode one file and compute its MFCC in ``__getitem__``."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self.front_end = paths, FrontEnd()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with torch.no_grad():
            return self.front_end(torch.from_numpy(fit_length(read_audio(self.paths[i]))))


def timed(batches, limit: int) -> float:
    """Clips per second over the first ``limit`` clips of an iterable of batches."""
    start, seen = time.perf_counter(), 0
    for batch in batches:
        seen += len(batch)
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="Speech Commands-layout folder")
    parser.add_argument("--clips", type=int, default=4000, help="clips per timed pass")
    parser.add_argument("--batch-size", type=int, default=100, help="clips per batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    parser.add_argument("--runs", type=int, default=3, help="timed passes of each path (the median is reported)")
    parser.add_argument("--cache-dir", default="data/cache", help="decoded-clip cache of the cached path")
    args = parser.parse_args()

    data = SpeechCommandsDataModule(
        root=args.root, task="12", batch_size=args.batch_size, cache_dir=args.cache_dir, augment=AUGMENT
    )
    data.prepare_data()
    data.setup("fit")
    front_end, augment = FrontEnd(), data.augmenter

    def waves():
        while True:
            for wave, _ in data.train_dataloader():
                yield wave

    def cached_batches(augmented: bool):
        for wave in waves():
            with torch.no_grad():
                yield front_end(augment(wave) if augmented else wave)

    paths = [c.path for c in scan(args.root).clips]
    loader = DataLoader(PerItemMFCC(paths), batch_size=args.batch_size, shuffle=True, num_workers=args.workers)

    def baseline_batches():
        while True:
            yield from loader

    loader_only = statistics.median(timed(waves(), args.clips) for _ in range(args.runs))
    plain = statistics.median(timed(cached_batches(False), args.clips) for _ in range(args.runs))
    cached = statistics.median(timed(cached_batches(True), args.clips) for _ in range(args.runs))
    baseline = statistics.median(timed(baseline_batches(), args.clips) for _ in range(args.runs))
    print(f"cached loader   : {loader_only:9.0f} clips/s (waveform batches from the cache alone)")
    print(f"cached features : {plain:9.0f} clips/s (decoded once, features per batch: the baseline's work)")
    print(f"cached path     : {cached:9.0f} clips/s (the same plus augmentation per batch, as in training)")
    print(f"baseline        : {baseline:9.0f} clips/s (decode + MFCC per item, {args.workers} DataLoader workers)")
    print(
        f"ratio           : {plain / baseline:9.1f} x   same work (goal: 10 x); "
        f"{cached / baseline:.1f} x with augmentation"
    )


if __name__ == "__main__":
    run_script(main)
