"""Lightning's multi-process training (DDP over gloo, two CPU processes) with the unchanged CLI and config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch
from probes import fingerprint

from pipeline.train.datamodule import SpeechCommandsDataModule

REPO = Path(__file__).resolve().parents[1]
RANKS, EPOCHS = 2, 2
TASK = ["yes", "no", "up", "down"]
# waveform augmentation off, so that the clips a rank trains on are the stored clips, byte for byte
NO_WAVE_AUGMENT = ["--data.augment.time_shift_ms=0", "--data.augment.noise_prob=0", "--data.augment.gain_db=[0,0]",
                   "--data.augment.reverb_prob=0", "--data.augment.band_prob=0"]  # fmt: skip


def test_ddp_two_processes_see_each_training_clip_once_per_epoch(tone_corpus: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.yaml"
    probe.write_text(
        "trainer:\n  callbacks:\n    - class_path: probes.RecordClips\n"
        f"      init_args: {{out_dir: {tmp_path / 'seen'}}}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    command = [
        sys.executable, "-m", "pipeline", "fit", "--config", str(REPO / "configs" / "tts_mfcc.yaml"),
        "--config", str(probe), "--run=ddp", f"--data.root={tone_corpus}", f"--data.task={json.dumps(TASK)}",
        "--data.cache_dir=cache", "--data.batch_size=8", f"--trainer.max_epochs={EPOCHS}",
        "--trainer.accelerator=cpu", f"--trainer.devices={RANKS}", "--trainer.strategy=ddp", *NO_WAVE_AUGMENT,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    data = SpeechCommandsDataModule(root=str(tone_corpus), task=TASK, cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    train = data.datasets["train"]
    expected = Counter(fingerprint(train[i][0]) for i in range(len(train)))
    assert len(expected) == len(train)  # every clip is distinguishable
    for epoch in range(EPOCHS):
        per_rank = [json.loads((tmp_path / "seen" / f"rank{r}_epoch{epoch}.json").read_text()) for r in range(RANKS)]
        assert len({len(seen) for seen in per_rank}) == 1  # equal shares keep the ranks in step
        seen = Counter(sum(per_rank, []))
        assert set(seen) == set(expected)  # every clip, and nothing else
        # each clip once; DistributedSampler repeats at most RANKS - 1 clips to even out the shares
        assert sum(seen.values()) - len(expected) == (-len(expected)) % RANKS
        assert all(count <= 2 for count in seen.values())
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1  # one decoded cache, shared by both processes
    checkpoint = torch.load(tmp_path / "runs" / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == EPOCHS - 1


def test_mixture_sampler_draws_the_same_sequence_in_every_process(tone_corpus: Path, tmp_path: Path) -> None:
    """Lightning gives each rank a share of the sampler's draw; that needs the draw to agree across ranks."""
    other = tone_corpus  # the same folder twice is a valid two-root mixture
    draws = []
    for _ in range(2):  # two independent instances, as two processes would build them
        data = SpeechCommandsDataModule(root=[str(tone_corpus), str(other)], weights=[1.0, 3.0], task=TASK,
                                        cache_dir=str(tmp_path / "cache"))  # fmt: skip
        data.setup("fit")
        loader = data.train_dataloader()
        draws.append([list(loader.sampler), list(loader.sampler)])  # two epochs
    assert draws[0] == draws[1]
    assert draws[0][0] != draws[0][1]  # a new draw each epoch
