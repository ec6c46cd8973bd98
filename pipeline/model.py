"""The inference model: a checkpoint's front end, acoustic model and labels, without Lightning.

:func:`load_model` reads a ``kws fit`` checkpoint (:func:`read_checkpoint` checks it first) into a
:class:`KWSModel`, which holds the same weights under the same names as the training
:class:`~pipeline.module.KWSModule` and can run its acoustic model through ONNX Runtime.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.audio import CLIP_SECONDS
from pipeline.errors import KWSError, first_line
from pipeline.features import FeatureConfig, FrontEnd
from pipeline.models import ModelConfig, build_model

INFERENCE = ("front_end", "encoder")  # the parts of a KWSModule's state dict that inference uses

RUNTIMES = ("onnx", "torch")  # how load_model runs the acoustic model
RUNTIME = "onnx"


class OnnxEncoder:
    """An acoustic model exported to ONNX and run by ONNX Runtime on the CPU.

    About three times faster per window than eager PyTorch on one thread for these small convolutional models,
    with the same outputs to about 1e-7.

    Args:
        encoder: The PyTorch model, ``(batch, n_features, frames)`` -> ``(batch, n_classes)``.
        n_features: Feature rows per frame.
        frames: Frames per window (fixed; the batch size is free).
        threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, encoder: nn.Module, n_features: int, frames: int, threads: int = 1) -> None:
        import onnxruntime as ort

        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                encoder.eval(), (torch.zeros(1, n_features, frames),), buffer, input_names=["features"],
                output_names=["logits"], dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
            )  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, features: Tensor) -> Tensor:
        return torch.from_numpy(self.session.run(None, {"features": features.float().contiguous().numpy()})[0])


class KWSModel(nn.Module):
    """The inference half of a :class:`~pipeline.module.KWSModule`: front end, acoustic model and labels.

    It holds the same weights under the same names, without Lightning (which the tools then never import).
    :meth:`use_onnx` moves the acoustic model to ONNX Runtime.
    """

    def __init__(self, labels: list[str], features: FeatureConfig, model: ModelConfig) -> None:
        super().__init__()
        self.labels = list(labels)
        self.front_end = FrontEnd(features)
        self.encoder = build_model(model, len(self.labels), self.front_end.n_features)
        self.onnx: OnnxEncoder | None = None

    def use_onnx(self, threads: int | None = None) -> KWSModel:
        """Run the acoustic model with ONNX Runtime (``threads``: default torch's intra-op thread count)."""
        frames = self.front_end.num_frames(round(CLIP_SECONDS * self.front_end.config.sample_rate))
        self.onnx = OnnxEncoder(self.encoder, self.front_end.n_features, frames, threads or torch.get_num_threads())
        return self

    def forward(self, waveform: Tensor) -> Tensor:
        """``(batch, samples)`` audio at the front end's rate -> ``(batch, n_classes)`` logits."""
        return self.classify(self.front_end(waveform))

    def classify(self, features: Tensor) -> Tensor:
        """``(batch, n_features, frames)`` features -> logits."""
        return self.encoder(features) if self.onnx is None else self.onnx(features)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``kws fit`` checkpoint (tensors and plain data only) and check it holds a kws model.

    Raises:
        KWSError: one sentence naming the file: missing, not a PyTorch file, or not a kws checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise KWSError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise KWSError(f"cannot read the checkpoint {path} ({err.strerror or first_line(err)})") from None
    except Exception:  # torch raises many types for foreign files (pickle, zip, runtime errors)
        raise KWSError(f"{path} is not a PyTorch checkpoint of tensors and plain data (the only kind loaded)") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not isinstance(checkpoint.get("state_dict"), dict) or not hparams.get("labels"):
        raise KWSError(f"{path} is not a kws checkpoint: it lacks the model's hyper-parameters, labels or weights")
    return checkpoint


def load_model(path: str | os.PathLike, runtime: str = RUNTIME) -> KWSModel:
    """Load the inference part of a ``kws fit`` checkpoint (CPU, eval mode, no gradients).

    ``runtime``: ``onnx`` (ONNX Runtime, the fastest on a CPU) or ``torch`` (eager PyTorch).

    Raises:
        KWSError: one sentence naming the file (see :func:`read_checkpoint`), or weights that do not fit the
            model its hyper-parameters describe.
    """
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    try:
        model = KWSModel(
            hparams["labels"], FeatureConfig(**hparams.get("features") or {}), ModelConfig(**hparams.get("model") or {})
        )
        model.load_state_dict({k: v for k, v in checkpoint["state_dict"].items() if k.split(".")[0] in INFERENCE})
    except (KWSError, TypeError, ValueError, RuntimeError, KeyError) as err:
        raise KWSError(f"{path} does not hold a usable kws model ({first_line(err)[:200]})") from None
    model.requires_grad_(False)
    model.eval()
    return model.use_onnx() if runtime == "onnx" else model
