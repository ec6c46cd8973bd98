"""A Lightning callback for tests run in subprocesses: it records which clips each rank trained on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
from torch import Tensor


def fingerprint(clip: Tensor) -> str:
    """Identity of one clip's samples."""
    return hashlib.sha1(clip.detach().cpu().float().numpy().tobytes()).hexdigest()


class RecordClips(L.Callback):
    """Write ``rank<R>_epoch<E>.json``: the fingerprints of the clips of every training batch of that epoch."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.seen = Path(out_dir), []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.seen += [fingerprint(clip) for clip in batch[0]]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps(self.seen))
        self.seen = []
