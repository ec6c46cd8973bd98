"""The ``LightningModule``: front end -> SpecAugment -> acoustic model, trained with softmax cross-entropy."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from pipeline.console import console
from pipeline.errors import DataError
from pipeline.train.augment import SpecAugment, SpecAugmentConfig
from pipeline.train.features import FeatureConfig
from pipeline.train.model import KWSModel
from pipeline.train.models import ModelConfig
from pipeline.train.report import print_report, write_confusion

C = TypeVar("C")


@dataclass
class OptimizerConfig:
    """Optimizer and learning-rate schedule (linear warm-up, then cosine decay to zero, stepped per batch).

    Args:
        name: ``adamw`` or ``sgd`` (with Nesterov momentum).
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay.
        momentum: SGD momentum.
        warmup_epochs: Epochs of linear warm-up.
        schedule: ``cosine`` or ``constant`` after the warm-up.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-3
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "constant"] = "cosine"


def _config(cls: type[C], value: C | dict) -> C:
    """Accept a config block as the dataclass or as the plain dict a checkpoint stores."""
    if isinstance(value, dict):
        names = {f.name for f in fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**value)
    return value


class KWSModule(L.LightningModule):
    """Keyword classifier over 1 s windows; the checkpoint holds everything inference needs.

    Args:
        labels: Class names in output order (``kws`` links them from the data task: one source).
        features: Front-end settings (preprocessor block).
        spec_augment: SpecAugment settings, applied in training only.
        model: Acoustic model (encoder and classifier).
        optimizer: Optimizer and schedule.
        label_smoothing: Label smoothing of the cross-entropy loss.
        mixup: Mixup's Beta(alpha, alpha) parameter: each training batch is blended with a shuffled copy of
            itself (waveforms and targets, Zhang et al., 2018); 0 turns it off.
        compile: Compile the acoustic model with ``torch.compile`` for training (the checkpoint is unchanged).
        stream_context: A streaming (causal) model trains as it will run: each training clip follows another
            clip of the batch, which its convolutions see as the past (a stream's previous second), and the
            logits are the mean over the clip's own frames. False: each clip alone, after silence (zero padding).

    Example:
        >>> module = KWSModule(labels=["_silence_", "_unknown_", "yes", "no"])
        >>> module(torch.zeros(2, 16000)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        labels: list[str],
        features: FeatureConfig = FeatureConfig(),
        spec_augment: SpecAugmentConfig = SpecAugmentConfig(),
        model: ModelConfig = ModelConfig(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        compile: bool = False,
        stream_context: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.feature_config = _config(FeatureConfig, features)
        self.model_config = _config(ModelConfig, model)
        self.optimizer_config = _config(OptimizerConfig, optimizer)
        spec_config = _config(SpecAugmentConfig, spec_augment)
        for key, value in (("features", self.feature_config), ("spec_augment", spec_config),
                           ("model", self.model_config), ("optimizer", self.optimizer_config)):  # fmt: skip
            self.hparams[key] = asdict(value)
        self.spec_augment = SpecAugment(spec_config)
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.compile_encoder = compile
        self.mixup = torch.distributions.Beta(mixup, mixup) if mixup > 0 else None
        if not labels:
            raise DataError("the model needs its labels: give model.labels (kws takes them from the data task)")
        self.labels = list(labels)
        n = len(self.labels)
        net = KWSModel(self.labels, self.feature_config, self.model_config)  # the one model definition
        self.front_end, self.encoder = net.front_end, net.encoder
        self.stream_context = stream_context and bool(getattr(net.encoder, "causal", False))
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_acc = MulticlassAccuracy(n, average="micro")
        self.test_acc = MulticlassAccuracy(n, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(n)

    def configure_model(self) -> None:
        if self.compile_encoder:
            self.encoder.compile()  # in place: the state-dict keys stay those of the plain model

    def forward(self, waveform: Tensor) -> Tensor:
        """``(batch, samples)`` audio at the front end's rate -> ``(batch, n_classes)`` logits."""
        return self.classify(self.front_end(waveform))

    def classify(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` features -> logits (SpecAugment applies in training only)."""
        return self.encoder(self.spec_augment(features))

    def after_context(self, wave: Tensor) -> Tensor:
        """Training logits of a streaming model that hears the batch's previous clip before each clip (see
        ``stream_context``); the other models' ordinary logits."""
        hop = self.front_end.hop_length
        if not self.stream_context or wave.shape[-1] % hop:  # the clip's frames must start on a hop
            return self(wave)
        frames = self.front_end.num_frames(wave.shape[-1])
        features = self.spec_augment(self.front_end(torch.cat([wave.roll(1, dims=0), wave], dim=-1)))
        return self.encoder.frame_logits(features)[:, -frames:].mean(dim=1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        wave, target = batch
        if self.mixup is None:
            logits = self.after_context(wave)
            loss = self.loss(logits, target)
        else:
            share = self.mixup.sample().item()
            partner = torch.randperm(len(wave), device=wave.device)
            logits = self.after_context(share * wave + (1 - share) * wave[partner])
            loss = share * self.loss(logits, target) + (1 - share) * self.loss(logits, target[partner])
        self.train_acc(logits, target)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        wave, target = batch
        logits = self(wave)
        self.val_acc(logits, target)
        self.log("val_loss", self.loss(logits, target), prog_bar=True)
        self.log("val_acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        wave, target = batch
        logits = self(wave)
        self.test_acc(logits, target)
        self.test_confusion(logits, target)
        self.log("test_acc", self.test_acc)

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()
        if not self.trainer.is_global_zero:
            return
        print_report(confusion, self.labels)
        ckpt = self.trainer.ckpt_path
        out_dir = Path(ckpt).parent if ckpt else Path(self.trainer.log_dir or ".")
        for path in write_confusion(confusion, self.labels, out_dir):
            console.print(f"wrote {path}")

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optimizer_config
        if cfg.name == "sgd":
            opt = torch.optim.SGD(self.parameters(), cfg.lr, cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
        else:
            opt = torch.optim.AdamW(self.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total, int(cfg.warmup_epochs * total / max(1, self.trainer.max_epochs or 1)))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if cfg.schedule == "constant":
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
