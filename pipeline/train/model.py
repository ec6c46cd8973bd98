"""The model: a checkpoint's front end, acoustic model and labels, one definition for every door.

:class:`KWSModel` builds the front end and the acoustic model; the training :class:`~pipeline.train.module.KWSModule`
holds one under the same weight names, :func:`load_model` reads a ``kws fit`` checkpoint into one (checked by
:func:`read_checkpoint`), and :meth:`KWSModel.to_onnx` exports it for the torch-free runtime
(:class:`~pipeline.runtime.onnx_model.OnnxModel`).
"""

from __future__ import annotations

import functools
import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.errors import KWSError, first_line
from pipeline.runtime.audio import clip_samples
from pipeline.runtime.onnx_model import FORMAT, INPUTS, OPSET, OUTPUTS, RUNTIMES, STEP_KEYS, OnnxModel
from pipeline.train.features import FeatureConfig, FrontEnd
from pipeline.train.models import ModelConfig, build_model, check_features, streaming_form

INFERENCE = ("front_end", "encoder")  # the parts of a KWSModule's state dict that inference uses
DECISION_KEY = "kws_decision"  # where a checkpoint keeps its operating point (pipeline.runtime.decision)


class KWSModel(nn.Module):
    """Front end, acoustic model and labels: ``(batch, samples)`` audio -> ``(batch, n_classes)`` logits.

    Besides ``forward``, it offers the numpy interface of the streaming engine
    (:class:`~pipeline.runtime.streaming.Classifier`) and :meth:`to_onnx`. A causal encoder (``model.causal``) and
    the speech embedding are ``streaming``: the engine then runs them step by step (:meth:`frame_logits`, one
    output every ``step_frames`` frames) instead of window by window.

    Args:
        labels: Class names in output order.
        features: Front-end settings.
        model: Acoustic-model settings.
        pretrained: Load the pretrained part of the encoder, if it has one (``model.name speech_embedding``),
            from its package; ``False`` when a checkpoint supplies every weight.

    Example:
        >>> model = KWSModel(["_silence_", "_unknown_", "yes", "no"], FeatureConfig(), ModelConfig())
        >>> model(torch.zeros(2, 16000)).shape
        torch.Size([2, 4])
    """

    def __init__(self, labels: list[str], features: FeatureConfig, model: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.labels = list(labels)
        check_features(features, model)
        self.front_end = FrontEnd(features)
        self.encoder = build_model(model, len(self.labels), self.front_end.n_features, pretrained)
        self.sample_rate = features.sample_rate
        self.win_length, self.hop_length = self.front_end.win_length, self.front_end.hop_length
        self.n_features = self.front_end.n_features
        step = streaming_form(self.encoder)
        self.streaming = step is not None
        if step is not None:  # what the engine needs to know of the step function (pipeline.runtime.streaming)
            self.step_frames, self.lead_outputs = step.step_frames, step.lead_outputs
            self.window_outputs = step.window_outputs or self.front_end.num_frames(clip_samples(self.sample_rate))
        self.decision: dict[str, float] = {}  # the operating point a checkpoint carries, if any

    def forward(self, waveform: Tensor) -> Tensor:
        """``(batch, samples)`` audio at the front end's rate -> ``(batch, n_classes)`` logits."""
        return self.encoder(self.front_end(waveform))

    @torch.inference_mode()
    def features(self, audio: np.ndarray) -> np.ndarray:
        """``(..., samples)`` audio -> ``(..., n_features, frames)`` features (numpy in and out)."""
        return self.front_end(torch.from_numpy(np.require(audio, np.float32, ["C", "W"]))).numpy()

    @torch.inference_mode()
    def logits(self, windows: np.ndarray) -> np.ndarray:
        """``(batch, n_features, frames)`` feature windows -> ``(batch, n_classes)`` logits (numpy)."""
        return self.encoder(torch.from_numpy(np.require(windows, np.float32, ["C", "W"]))).numpy()

    @functools.cached_property
    def _step(self) -> nn.Module:  # not a registered sub-module: the state dict keeps the encoder's keys only
        step = streaming_form(self.encoder)
        if step is None:
            raise KWSError("only a causal model (model.causal) or the speech embedding runs step by step")
        return step

    def initial_state(self) -> np.ndarray:
        """The streaming state before a stream's first frame (streaming models only)."""
        return self._step.initial_state().numpy()

    @torch.inference_mode()
    def frame_logits(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n_features, T)`` new frames (whole steps) and the state -> ``(n_classes, T // step_frames)`` outputs
        (a window's logits are the mean of ``window_outputs`` of them) and the next state (streaming models
        only)."""
        frames = torch.from_numpy(np.require(frames, np.float32, ["C", "W"]))[None]
        logits, state = self._step(frames, torch.from_numpy(np.require(state, np.float32, ["C", "W"])))
        return logits[0].T.numpy(), state.numpy()

    def to_onnx(self) -> bytes:
        """One ONNX model holding both halves, with the labels and feature settings in its metadata.

        Inputs ``audio`` ``(batch, samples)`` and ``windows`` ``(batch, n_features, frames)``; outputs
        ``features`` (of ``audio``) and ``logits`` (of ``windows``). The two halves are separate paths through
        the graph, so that a stream's frames are computed once and each window then costs only the encoder
        (:class:`~pipeline.runtime.onnx_model.OnnxModel` asks for one path at a time). A streaming model has a third
        path, its step function: ``frames`` ``(batch, n_features, T)`` and ``state`` -> ``frame_logits``
        ``(batch, T / step_frames, n_classes)`` and ``next_state``.
        """
        samples = clip_samples(self.sample_rate)
        frames = self.front_end.num_frames(samples)
        inputs = [torch.zeros(1, samples), torch.zeros(1, self.n_features, frames)]
        axes = {"audio": {0: "batch", 1: "samples"}, "features": {0: "batch", 2: "frames"}, "windows": {0: "batch"},
                "logits": {0: "batch"}}  # fmt: skip
        if self.streaming:
            inputs += [torch.zeros(1, self.n_features, 3 * self.step_frames), self._step.initial_state()]
            axes |= {"frames": {0: "batch", 2: "steps"}, "state": {0: "batch"},
                     "frame_logits": {0: "batch", 1: "steps"}, "next_state": {0: "batch"}}  # fmt: skip
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Paths(self).eval(), tuple(inputs), buffer, input_names=list(INPUTS[: len(inputs)]),
                output_names=list(OUTPUTS[: len(inputs)]), opset_version=OPSET, dynamo=False, dynamic_axes=axes,
            )  # fmt: skip
        import onnx

        graph = onnx.load_from_string(buffer.getvalue())
        _drop_weight_aliases(graph.graph)
        meta = {"kws_format": FORMAT, "labels": json.dumps(self.labels),
                "features": json.dumps(asdict(self.front_end.config)),
                "sample_rate": self.sample_rate, "win_length": self.win_length, "hop_length": self.hop_length,
                "n_features": self.n_features, "window_frames": frames, "streaming": int(self.streaming),
                "decision": json.dumps(self.decision)}  # fmt: skip
        if self.streaming:
            meta["steps"] = json.dumps({key: getattr(self, key) for key in STEP_KEYS})
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=str(value))
        return graph.SerializeToString()


def _drop_weight_aliases(graph: Any) -> None:
    """Let every node read shared weights from their initializer: the exporter gives a second path that uses
    the same weights (a streaming model's step) ``Identity`` copies, which ONNX Runtime's quantizer refuses."""
    initializers = {tensor.name for tensor in graph.initializer}
    aliases = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers}
    outputs = {o.name for o in graph.output}
    aliases = {alias: name for alias, name in aliases.items() if alias not in outputs}
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = aliases.get(name, name)
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in aliases)]
    del graph.node[:]
    graph.node.extend(kept)


class _Paths(nn.Module):
    def __init__(self, model: KWSModel) -> None:
        super().__init__()
        self.front_end, self.encoder = model.front_end, model.encoder
        self.step = model._step if model.streaming else None

    def forward(self, audio: Tensor, windows: Tensor, *stream: Tensor) -> tuple[Tensor, ...]:
        halves = self.front_end(audio), self.encoder(windows)
        return halves + (self.step(*stream) if self.step is not None else ())


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


def load_model(path: str | os.PathLike, runtime: str = RUNTIMES[0]) -> KWSModel | OnnxModel:
    """Load the inference part of a ``kws fit`` checkpoint (CPU, eval mode, no gradients).

    ``runtime``: ``onnx`` (exported in memory and run by ONNX Runtime, the fastest on a CPU) or ``torch``
    (eager PyTorch).

    The model carries the checkpoint's operating point (``decision``), if it has one.

    Raises:
        KWSError: one sentence naming the file (see :func:`read_checkpoint`), or weights that do not fit the
            model its hyper-parameters describe.
    """
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    try:
        model = KWSModel(
            hparams["labels"],
            FeatureConfig(**hparams.get("features") or {}),
            ModelConfig(**hparams.get("model") or {}),
            pretrained=False,
        )
        model.load_state_dict({k: v for k, v in checkpoint["state_dict"].items() if k.split(".")[0] in INFERENCE})
    except (KWSError, TypeError, ValueError, RuntimeError, KeyError) as err:
        raise KWSError(f"{path} does not hold a usable kws model ({first_line(err)[:200]})") from None
    model.requires_grad_(False)
    model.eval()
    model.decision = dict(checkpoint.get(DECISION_KEY) or {})
    return OnnxModel(model.to_onnx(), name=str(path)) if runtime == "onnx" else model


def save_operating_point(path: str | os.PathLike, decision: dict[str, float]) -> None:
    """Write ``decision`` into the checkpoint at ``path`` (atomically; the rest of the file is unchanged)."""
    from pipeline.files import atomic_path

    checkpoint = read_checkpoint(path)
    checkpoint[DECISION_KEY] = dict(decision)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
