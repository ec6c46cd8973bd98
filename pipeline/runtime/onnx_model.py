"""An exported model run by ONNX Runtime: the inference path without PyTorch (numpy and onnxruntime only).

``kws export`` (:meth:`pipeline.train.model.KWSModel.to_onnx`) writes one ONNX file with two paths through its graph:
``audio`` -> ``features`` (the front end) and ``windows`` -> ``logits`` (the acoustic model), and the labels and
front-end settings in its metadata. :class:`OnnxModel` asks for one path at a time (feeding the others an
empty input), so that the streaming engine computes every frame once and each window costs only the
acoustic model. A streaming model (causal, or the speech embedding's ring) has a third path, its step function:
``frames`` and ``state`` -> ``frame_logits`` and ``next_state``, one output every ``step_frames`` frames
(metadata ``steps``; :mod:`pipeline.train.models.causal`, :mod:`pipeline.train.models.speech_embedding`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline.errors import KWSError, first_line
from pipeline.runtime.audio import frame_count

FORMAT = 1  # version of the metadata layout below
OPSET = 17
METADATA = ("kws_format", "labels", "features", "sample_rate", "win_length", "hop_length", "n_features",
            "window_frames")  # fmt: skip
# the paths' inputs and outputs; a streaming model has all four, the others the first two
INPUTS, OUTPUTS = ("audio", "windows", "frames", "state"), ("features", "logits", "frame_logits", "next_state")
STEP_KEYS = ("step_frames", "window_outputs", "lead_outputs")  # a streaming model's steps (pipeline.runtime.streaming)
RUNTIMES = ("onnx", "torch")  # how a checkpoint runs: exported to ONNX Runtime in memory (the default), or eager


class OnnxModel:
    """A ``kws export`` model with the streaming engine's interface (:class:`~pipeline.runtime.streaming.Classifier`).

    Args:
        source: The ``.onnx`` file, or its bytes.
        threads: ONNX Runtime intra-op threads (one is fastest for these small models on a busy CPU).
        name: How messages name the model (default: the path).

    Raises:
        KWSError: one sentence: no such file, not an ONNX model, no kws metadata, or a graph of another shape.
    """

    def __init__(self, source: str | os.PathLike | bytes, threads: int = 1, name: str | None = None) -> None:
        import onnxruntime as ort

        name = name or ("the model" if isinstance(source, bytes) else str(source))
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise KWSError(f"model {name} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 4  # ONNX Runtime's own log stays quiet: its failures come back as errors here
        try:
            self.session = ort.InferenceSession(
                source if isinstance(source, bytes) else str(source), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ONNX Runtime raises its own types for foreign or broken files
            raise KWSError(f"{name} is not an ONNX model ({first_line(err)[:160]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in METADATA if key not in meta]
        if missing:
            raise KWSError(f"{name} is not a kws export: its metadata lacks {', '.join(missing)} "
                           "(make it with kws export)")  # fmt: skip
        try:
            self.labels: list[str] = list(json.loads(meta["labels"]))
            self.config: dict = dict(json.loads(meta["features"]))
            self.sample_rate, self.win_length, self.hop_length, self.n_features, frames = (
                int(meta[key]) for key in ("sample_rate", "win_length", "hop_length", "n_features", "window_frames")
            )
            self.streaming = meta.get("streaming", "0") == "1"  # older exports have no such key
            self.decision: dict[str, float] = dict(json.loads(meta.get("decision", "{}")))  # nor this one
            steps = {"step_frames": 1, "window_outputs": frames, "lead_outputs": 0}  # older (causal) exports'
            steps |= json.loads(meta.get("steps", "{}"))
            self.step_frames, self.window_outputs, self.lead_outputs = (int(steps[key]) for key in STEP_KEYS)
        except (ValueError, TypeError):
            raise KWSError(f"{name}: its kws metadata cannot be read (make it again with kws export)") from None
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        paths = 4 if self.streaming else 2
        if (set(inputs), set(outputs)) != (set(INPUTS[:paths]), set(OUTPUTS[:paths])) or inputs["windows"][1:] != [
            self.n_features, frames
        ] or outputs["logits"][1:] != [len(self.labels)]:  # fmt: skip
            raise KWSError(f"{name} is an ONNX model of another shape: a kws export maps audio to features and "
                           f"windows of {self.n_features}x{frames} features to {len(self.labels)} logits")  # fmt: skip
        # ONNX Runtime runs the whole graph on every call: the paths not asked for get the least input they take
        self._idle = {"audio": np.zeros((1, self.win_length), np.float32),  # one frame
                      "windows": np.zeros((0, self.n_features, frames), np.float32)}  # no window  # fmt: skip
        if self.streaming:
            self._state_size = int(inputs["state"][1])
            self._idle |= {"frames": np.zeros((0, self.n_features, self.step_frames), np.float32),
                           "state": np.zeros((0, self._state_size), np.float32)}  # fmt: skip

    def _run(self, output: str, **feed: np.ndarray) -> list[np.ndarray]:
        outputs = [output] + (["next_state"] if output == "frame_logits" else [])
        return self.session.run(outputs, self._idle | feed)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """``(..., samples)`` audio -> ``(..., n_features, frames)`` features of its complete frames."""
        audio = np.asarray(audio, np.float32)
        n = audio.shape[-1]
        frames = frame_count(n, self.win_length, self.hop_length)
        if not frames:
            return np.zeros((*audio.shape[:-1], self.n_features, 0), np.float32)
        whole = audio[..., : (frames - 1) * self.hop_length + self.win_length]  # the graph takes whole frames
        flat = np.ascontiguousarray(whole.reshape(-1, whole.shape[-1]))
        out = self._run("features", audio=flat)[0]
        return out.reshape(*audio.shape[:-1], *out.shape[1:])

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """``(batch, n_features, frames)`` feature windows -> ``(batch, n_classes)`` logits."""
        return self._run("logits", windows=np.ascontiguousarray(windows, np.float32))[0]

    def initial_state(self) -> np.ndarray:
        """The streaming state before a stream's first frame (streaming models only)."""
        return np.zeros((1, self._state_size), np.float32)

    def frame_logits(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n_features, T)`` new frames (whole steps) and the state -> ``(n_classes, T // step_frames)`` outputs
        and the next state (streaming models only)."""
        logits, state = self._run("frame_logits", frames=np.ascontiguousarray(frames, np.float32)[None], state=state)
        return logits[0].T, state
