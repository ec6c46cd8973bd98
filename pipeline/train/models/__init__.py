"""Acoustic models: ``(batch, n_features, frames)`` features in, ``(batch, n_classes)`` logits out."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Literal

from torch import Tensor, nn

from pipeline.errors import KWSError
from pipeline.train.features import FeatureConfig
from pipeline.train.models.bcresnet import BCResNet
from pipeline.train.models.causal import StreamingForm
from pipeline.train.models.dscnn import DSCNN
from pipeline.train.models.matchboxnet import MatchboxNet
from pipeline.train.models.speech_embedding import FEATURES as EMBEDDING_FEATURES
from pipeline.train.models.speech_embedding import EmbeddingRing, SpeechEmbedding
from pipeline.train.models.tcresnet import TCResNet

MODELS: dict[str, type[nn.Module]] = {
    "bcresnet": BCResNet, "dscnn": DSCNN, "tcresnet": TCResNet, "matchboxnet": MatchboxNet,
    "speech_embedding": SpeechEmbedding,
}  # fmt: skip
# front ends that a model was made for: it reads nothing else
MODEL_FEATURES: dict[str, FeatureConfig] = {"speech_embedding": EMBEDDING_FEATURES}


@dataclass
class ModelConfig:
    """Which acoustic model, and its size.

    Args:
        name: ``bcresnet`` (Kim et al. 2021), ``dscnn`` (Zhang et al. 2017), ``tcresnet`` (Choi et al. 2019),
            ``matchboxnet`` (Majumdar and Ginsburg 2020) or ``speech_embedding`` (Google's pretrained speech
            embedding, frozen, under a trained classifier, as openWakeWord; Lin et al. 2020): it reads only its own
            32-band log-mel front end (:data:`pipeline.train.models.speech_embedding.FEATURES`).
        width: BC-ResNet width tau: 1, 1.5, 2, 3, 6 or 8.
        size: Variant of the other families: DS-CNN ``s``/``m``/``l`` (default ``s``), TC-ResNet
            ``8``/``14``/``8-1.5``/``14-1.5`` (default ``8``), MatchboxNet ``BxRxC`` (default ``3x1x64``).
        dropout: Dropout of DS-CNN, TC-ResNet, MatchboxNet and the speech embedding's classifier (default: each
            model's own).
        causal: Streaming form (MatchboxNet only): convolutions over time see only the past, so the streaming
            engine computes each frame once and decides every 10-20 ms (:mod:`pipeline.train.models.causal`).
        cmn: Cepstral mean normalisation of each window (:class:`WindowCMN`) before the model: what a voice, a
            microphone or a room adds to every frame's log spectrum is taken away. Window models only.
    """

    name: Literal["bcresnet", "dscnn", "tcresnet", "matchboxnet", "speech_embedding"] = "bcresnet"
    width: float = 1
    size: str | None = None
    dropout: float | None = None
    causal: bool = False
    cmn: bool = False


class WindowCMN(nn.Module):
    """Subtract from each feature row its mean over the window's frames (cepstral mean normalisation).

    A fixed filter on the audio (a voice's timbre, a microphone, a room's colouring) adds a constant to each
    log-mel band, and so to each cepstral coefficient of every frame: the window's mean takes it away. It
    works on whole windows, after the streaming front end, so the engine's stream equals the offline run.

    Example:
        >>> import torch
        >>> features = torch.randn(2, 40, 101)
        >>> torch.allclose(WindowCMN()(features + torch.randn(2, 40, 1)), WindowCMN()(features), atol=1e-5)
        True
    """

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` -> the same, each row's mean over the frames removed."""
        return features - features.mean(dim=-1, keepdim=True)


def check_features(features: FeatureConfig, config: ModelConfig) -> None:
    """Refuse, in one sentence, a front end other than the one a model reads (:data:`MODEL_FEATURES`)."""
    wanted = MODEL_FEATURES.get(config.name)
    if wanted is None:
        return
    unused = {"n_mfcc"} if wanted.kind == "logmel" else set()
    differ = [f"features.{k} {v!r} (not {getattr(features, k)!r})" for k, v in asdict(wanted).items()
              if k not in unused and getattr(features, k) != v]  # fmt: skip
    if differ:
        raise KWSError(f"model.name {config.name} reads its own front end: set {', '.join(differ)}")


def build_model(config: ModelConfig, n_classes: int, n_features: int, pretrained: bool = True) -> nn.Module:
    """Instantiate ``config.name`` with the config fields its constructor takes; ``pretrained`` loads the
    pretrained part of a model that has one (``False`` when a checkpoint supplies every weight)."""
    if config.name not in MODELS:
        raise KWSError(f"model.name must be one of {', '.join(MODELS)}, not {config.name!r}")
    cls = MODELS[config.name]
    accepted = inspect.signature(cls).parameters
    if config.causal and "causal" not in accepted:
        streamable = [name for name, model in MODELS.items() if "causal" in inspect.signature(model).parameters]
        raise KWSError(f"model.causal is available for {', '.join(streamable)} only, not {config.name}")
    if config.cmn and config.causal:
        raise KWSError("model.cmn needs the whole window, so a causal (streaming) model cannot have it")
    kwargs = {k: v for k, v in asdict(config).items() if k in accepted and k != "name" and v is not None}
    if "pretrained" in accepted:
        kwargs["pretrained"] = pretrained
    model = cls(n_classes=n_classes, n_features=n_features, **kwargs)
    return nn.Sequential(WindowCMN(), model) if config.cmn else model


def streaming_form(encoder: nn.Module) -> StreamingForm | EmbeddingRing | None:
    """The step function the streaming engine runs ``encoder`` with: a causal model's
    (:class:`~pipeline.train.models.causal.StreamingForm`), the speech embedding's ring
    (:class:`~pipeline.train.models.speech_embedding.EmbeddingRing`), or None (a window model)."""
    if getattr(encoder, "causal", False):
        return StreamingForm(encoder)
    return EmbeddingRing(encoder) if isinstance(encoder, SpeechEmbedding) else None
