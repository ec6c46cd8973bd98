"""Acoustic models: ``(batch, n_features, frames)`` features in, ``(batch, n_classes)`` logits out."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Literal

from torch import nn

from pipeline.errors import KWSError

from pipeline.models.bcresnet import BCResNet
from pipeline.models.dscnn import DSCNN

MODELS: dict[str, type[nn.Module]] = {"bcresnet": BCResNet, "dscnn": DSCNN}


@dataclass
class ModelConfig:
    """Which acoustic model, and its size.

    Args:
        name: ``bcresnet`` (Kim et al. 2021) or ``dscnn`` (Zhang et al. 2017).
        width: BC-ResNet width tau: 1, 1.5, 2, 3, 6 or 8.
        size: DS-CNN size: ``s``, ``m`` or ``l``.
        dropout: DS-CNN dropout before the classifier.
    """

    name: Literal["bcresnet", "dscnn"] = "bcresnet"
    width: float = 1
    size: Literal["s", "m", "l"] = "s"
    dropout: float = 0.2


def build_model(config: ModelConfig, n_classes: int, n_features: int) -> nn.Module:
    """Instantiate ``config.name`` with the config fields its constructor takes."""
    if config.name not in MODELS:
        raise KWSError(f"model.name must be one of {', '.join(MODELS)}, not {config.name!r}")
    cls = MODELS[config.name]
    accepted = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in asdict(config).items() if k in accepted and k != "name"}
    return cls(n_classes=n_classes, n_features=n_features, **kwargs)
