"""Wall time of one training epoch of a recipe on a corpus of Speech Commands size (105,829 clips).

No corpus of that size ships with the repository, so ``--make-from`` builds one from a TTS corpus made by
``kws synth``: every source clip is copied, speed-perturbed (a different factor per copy, so each copy is
new audio) and given a new speaker id, until ``--clips`` files exist. An interrupted build resumes.

Then ``kws fit --config <recipe>`` runs for one epoch on it and the script prints the time of the first
decode into the cache, of the training epoch and of the validation pass (Lightning's ``Timer``).

Example:
    python scripts/bench_epoch.py --corpus data/synth_105k --make-from data/synth_gsc12
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torchaudio
from rich.progress import track

from pipeline.console import run_script
from pipeline.data.speech_commands import NOISE_DIR, scan
from pipeline.runtime.audio import SAMPLE_RATE, fit_length, read_audio, save_audio
from pipeline.train.datamodule import SpeechCommandsDataModule
from pipeline.train.training_cli import make_cli

SPEECH_COMMANDS_CLIPS = 105_829  # v0.02, all 35 words
SPEEDS = (1.0, 0.88, 1.12, 0.91, 1.09, 0.94, 1.06, 0.97, 1.03, 0.85, 1.15)  # copy k plays at SPEEDS[k]


class EpochClock(L.Callback):
    """Wall time of the training epoch (without its validation pass) and of the validation passes."""

    def __init__(self) -> None:
        self.seconds = {"train": 0.0, "validate": 0.0}
        self._start = {"train": 0.0, "validate": 0.0}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["train"] = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["validate"] = time.perf_counter()
        if not trainer.sanity_checking:
            self.seconds["train"] += time.perf_counter() - self._start["train"]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds["validate"] += time.perf_counter() - self._start["validate"]
        self._start["train"] = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds["train"] += time.perf_counter() - self._start["train"]


def make_corpus(source: Path, out: Path, clips: int) -> None:
    """Write ``clips`` speed-perturbed copies of ``source``'s clips into ``out`` (Google layout, no list files)."""
    corpus = scan(source)
    copies = -(-clips // len(corpus.clips))
    if copies > len(SPEEDS):
        sys.exit(f"{source} has {len(corpus.clips)} clips: too few for {clips} with {len(SPEEDS)} speeds")
    resamplers = {s: torchaudio.transforms.Resample(round(SAMPLE_RATE * s), SAMPLE_RATE) for s in SPEEDS}
    for noise in corpus.noise_files:
        target = out / NOISE_DIR / noise.name
        if not target.exists():
            save_audio(target, read_audio(noise))
    for i in track(range(clips), description=f"writing {out}"):
        clip, copy = corpus.clips[i % len(corpus.clips)], i // len(corpus.clips)
        target = out / clip.word / f"{clip.speaker}s{copy}_nohash_{clip.path.stem.rsplit('_', 1)[-1]}.wav"
        if target.exists():
            continue
        with torch.no_grad():
            save_audio(
                target,
                fit_length(resamplers[SPEEDS[copy]](torch.from_numpy(fit_length(read_audio(clip.path)))).numpy()),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="corpus to train on (built first with --make-from)")
    parser.add_argument("--make-from", help="TTS corpus to build --corpus from, when --corpus is incomplete")
    parser.add_argument("--clips", type=int, default=SPEECH_COMMANDS_CLIPS, help="clips of the built corpus")
    parser.add_argument("--config", default="configs/gsc_v2_12.yaml", help="recipe to time")
    parser.add_argument("--cache-dir", default="data/cache", help="decoded-clip cache")
    args, overrides = parser.parse_known_args()
    corpus = Path(args.corpus)
    if args.make_from:
        make_corpus(Path(args.make_from), corpus, args.clips)

    start = time.perf_counter()
    SpeechCommandsDataModule(root=str(corpus), cache_dir=args.cache_dir).prepare_data()
    cache_s = time.perf_counter() - start
    cli = make_cli([
        "fit", "--config", args.config, f"--data.root={corpus}", f"--data.cache_dir={args.cache_dir}",
        "--trainer.max_epochs=1", "--trainer.callbacks+=bench_epoch.EpochClock",
        f"--run=bench-epoch-{int(time.time())}", *overrides,
    ])  # fmt: skip
    clock = next(c for c in cli.trainer.callbacks if type(c).__name__ == EpochClock.__name__)
    train_s, train_clips = clock.seconds["train"], len(cli.datamodule.datasets["train"])
    print(f"corpus          : {corpus} ({len(scan(corpus).clips):,} clips, {train_clips:,} in train)")
    print(f"first decode    : {cache_s / 60:6.1f} min (building the cache; later runs reuse it)")
    print(f"training epoch  : {train_s / 60:6.1f} min ({train_clips / train_s:.0f} clips/s)")
    print(f"validation      : {clock.seconds['validate'] / 60:6.1f} min (sanity check and the epoch's pass)")
    print(f"threads         : {torch.get_num_threads()}, device: {cli.trainer.strategy.root_device}")


if __name__ == "__main__":
    run_script(main)
