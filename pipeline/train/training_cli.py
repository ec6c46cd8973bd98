"""The training commands (``kws fit|validate|test``), built on ``LightningCLI``.

Each fact has one source: the data task gives the labels (linked into ``model.labels`` when the data module is
made), the model's front end gives the audio rate (linked into ``data.sample_rate``), and a checkpoint given with
``--ckpt_path`` gives every other model setting; a checkpoint whose labels differ from the task's is refused.

Every run of ``kws fit`` lives in ``runs/<run>/``: ``config.yaml`` (the full resolved config),
``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``, and ``logs/version_N/metrics.csv``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from pipeline.console import console
from pipeline.errors import KWSError
from pipeline.files import atomic_path
from pipeline.runtime.bundled import WEIGHTS_DIR, resolve_model
from pipeline.train.datamodule import SpeechCommandsDataModule
from pipeline.train.model import INFERENCE, read_checkpoint
from pipeline.train.module import KWSModule

RUNS_DIR = Path("runs")
CONFIG_FILE = "config.yaml"
BEST, LAST = "best", "last"
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")  # ckpt_path values Lightning resolves itself
LIGHTNING_VERSION_KEY = "pytorch-lightning_version"  # in every checkpoint Lightning writes, not in bundled models


class SaveRunConfig(SaveConfigCallback):
    """Write the resolved config to ``runs/<run>/config.yaml`` when training starts."""

    def __init__(self, *args: Any, run_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)
        self.run_dir = run_dir

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        with atomic_path(self.run_dir / CONFIG_FILE) as tmp:
            self.parser.save(self.config, tmp, overwrite=True, multifile=False, format="yaml")


class KWSCLI(LightningCLI):
    """LightningCLI with a run folder per ``--run`` name, linked labels and audio rate, and no ``predict``
    (``kws predict`` classifies files with the inference model)."""

    checkpoint_labels: list[str] | None = None
    model_only_state: dict[str, Any] | None = None  # the weights of a --ckpt_path without trainer state (bundled)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def _parse_ckpt_path(self) -> None:
        """Apply a checkpoint's hyper-parameters to the model's config, as Lightning does, less its labels (the
        data task's are checked against them); a missing or foreign file is one sentence."""
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt or ckpt in LIGHTNING_CKPT_KEYWORDS:
            return
        ckpt, _ = resolve_model(ckpt)  # a bundled model's name, as --ckpt takes it
        self.config[subcommand]["ckpt_path"] = ckpt
        checkpoint = read_checkpoint(ckpt)
        if LIGHTNING_VERSION_KEY not in checkpoint:
            if subcommand == "fit":
                raise KWSError(f"{ckpt} holds a model without its training state (a bundled model): it cannot "
                               "resume training; --ckpt_path resumes a run's own checkpoints/last.ckpt")  # fmt: skip
            self.model_only_state = checkpoint["state_dict"]
        hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
        self.checkpoint_labels = list(hparams.pop("labels"))
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run",
            type=str | None,
            default=None,
            help="Run name: outputs go to runs/<run>/ (default: the name of the first --config file).",
        )
        parser.link_arguments("data.labels", "model.labels", apply_on="instantiate")
        parser.link_arguments("model.features.sample_rate", "data.sample_rate")

    def _run_dir(self) -> Path:
        cfg = self.config[self.subcommand]
        if cfg.get("run"):
            return RUNS_DIR / cfg.run
        configs = cfg.get("config") or []
        return RUNS_DIR / (Path(str(configs[0])).stem if configs else "kws")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self._get(self.config_init, "trainer", default={})
        callbacks = list(cfg.get("callbacks") or [])
        if self.subcommand == "fit":
            run_dir = self._run_dir()
            # only the first process checks: under DDP the other ranks start after it has begun the run
            first_process = rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
            # a run exists once it has saved a checkpoint; a run that failed before that can be started again
            started = any((run_dir / "checkpoints").glob("*.ckpt"))
            if first_process and started and not self.config.fit.get("ckpt_path"):
                raise KWSError(
                    f"{run_dir} already holds a run: resume it with --ckpt_path last, or choose another --run name"
                )
            self.save_config_kwargs["run_dir"] = run_dir
            if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
                ckpt_dir = run_dir / "checkpoints"
                callbacks.append(ModelCheckpoint(ckpt_dir, BEST, monitor="val_acc", mode="max"))
                callbacks.append(ModelCheckpoint(ckpt_dir, LAST))  # every epoch, for --ckpt_path last
            if cfg.get("logger") in (None, True):
                kwargs["logger"] = CSVLogger(run_dir, name="logs")
            callbacks.append(LearningRateMonitor("epoch"))
            kwargs.setdefault("default_root_dir", str(run_dir))
        else:
            self.save_config_callback = None
            ckpt = self.config[self.subcommand].get("ckpt_path")
            kwargs.setdefault("logger", False)
            kwargs.setdefault("enable_checkpointing", False)
            bundled = ckpt and Path(ckpt).resolve().parent == WEIGHTS_DIR.resolve()  # the package is not written to
            out = RUNS_DIR / f"bundled-{Path(ckpt).stem}" if bundled else Path(ckpt).parent if ckpt else self._run_dir()
            kwargs.setdefault("default_root_dir", str(out))
        if not any(isinstance(c, RichProgressBar) for c in callbacks) and sys.stdout.isatty():
            callbacks.append(RichProgressBar())
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    def _check_checkpoint_labels(self) -> None:
        labels = list(self.datamodule.labels)
        if self.checkpoint_labels is not None and self.checkpoint_labels != labels:
            raise KWSError(
                f"the checkpoint's labels {self.checkpoint_labels} differ from the data task's {labels}: give the "
                "task it was trained with (--data.task, or --config with its run's config.yaml)"
            )

    before_fit = before_validate = before_test = _check_checkpoint_labels

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """Load a checkpoint that holds the model alone (a bundled model, without Lightning's trainer state) into
        the module here, since ``Trainer.validate|test`` can restore only a full training checkpoint."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if self.model_only_state is not None:
            missing, unexpected = self.model.load_state_dict(self.model_only_state, strict=False)
            if unexpected or any(key.split(".")[0] in INFERENCE for key in missing):
                raise KWSError(f"the weights of {kwargs['ckpt_path']} do not fit the model its hyper-parameters "
                               "describe")  # fmt: skip
            kwargs["ckpt_path"] = None
        return kwargs

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") or getattr(checkpoint, "last_model_path", "")
        if best and self.trainer.is_global_zero:
            run_dir = Path(best).parent.parent
            console.print(f"best checkpoint: {best}")
            console.print(f"test it with:    kws test --config {run_dir / CONFIG_FILE} --ckpt_path {best}")


def make_cli(args: list[str] | None = None, run: bool = True) -> KWSCLI:
    """Build (and by default run) the training CLI on ``args``."""
    return KWSCLI(
        KWSModule,
        SpeechCommandsDataModule,
        save_config_callback=SaveRunConfig,
        seed_everything_default=0,
        trainer_defaults={"max_epochs": 30, "log_every_n_steps": 10, "deterministic": False},
        parser_kwargs={"description": "Train and score keyword-spotting models (see README.md)."},
        args=args,
        run=run,
    )


NOISY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # torch/Lightning version skew, harmless
    r".*callbacks used to create the checkpoint need to be provided",  # test/validate need no ModelCheckpoint
    r".*smaller than the logging interval",
    r".*does not have many workers",  # clips come from memory; workers do not help
    r".*not supported by the model summary",  # bf16: only the size estimate of the summary is off
)


def _quiet_lightning() -> None:
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())


def run_training(args: list[str] | None) -> None:
    """Run a training command on ``args`` (``None``: the process's own arguments)."""
    torch.set_float32_matmul_precision("high")
    _quiet_lightning()
    make_cli(args)
