"""Google's pretrained speech embedding (Lin et al., "Training Keyword Spotters with Limited and Synthesized Speech
Data", ICASSP 2020) under a small trained classifier: the encoder that lets openWakeWord's TTS-only models hear
real people.

The embedding network was trained by Google on a large corpus of real speech, and is frozen here: only the
classifier on top learns, so a model trained on TTS voices alone inherits what the embedding knows of real
voices. Its weights come from ``embedding_model.onnx`` in the PyPI package ``openwakeword`` 0.4 (Apache-2.0; the
versions after 0.4 download it instead), and are saved in every checkpoint, so only training needs the package.

The network reads 76 frames (0.78 s) of a 32-band log-mel spectrogram (:data:`FEATURES`) and gives one
96-dimensional embedding. It is all convolutions and poolings, so on a longer input it gives one embedding
every 8 frames (80 ms), each equal to the embedding of its own 76 frames.

**The ring** (:class:`EmbeddingRing`, the model's streaming form, as openWakeWord runs it): on a stream each 80 ms
embedding is computed once, from the frames of the stream itself, and kept; every 80 ms the classifier reads the
last 9. Its output is the window that starts 0.24 s after the first of them (:data:`CONTEXT_FRAMES`): the window
the classifier was trained on, with the stream's own audio in the 0.24 s on either side where a training clip
had silence. On a clip with silence around it the two forms give the same scores.
"""

from __future__ import annotations

import importlib.metadata
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.errors import KWSError
from pipeline.train.features import FeatureConfig

FEATURES = FeatureConfig(kind="logmel", window_ms=25.0, hop_ms=10.0, n_fft=512, n_mels=32, f_min=60.0, f_max=3800.0)
PACKAGE, WEIGHTS_FILE = "openwakeword", "openwakeword/resources/models/embedding_model.onnx"
EMBEDDING_DIM = 96
WINDOW_FRAMES, EMBEDDING_STRIDE = 76, 8  # one embedding per 76 frames, every 8 frames
# 0.24 s of silence on each side of a window, so that a word anywhere in it lies whole in one embedding's 0.78 s;
# a 1 s window (97 frames) then gives 9 embeddings, all of which the classifier's first layer reads at once
CONTEXT_FRAMES, SPAN = 24, 9
SILENCE_DB = 10 * math.log10(FEATURES.log_floor)  # what the front end gives for digital silence
INT16_DB = 90.30873362  # 20 log10(32767): the network's log-mel is of audio scaled to 16-bit integers
SCALE, OFFSET = 0.1, 2.0  # openWakeWord's "x / 10 + 2" that brings the log-mel to the network's range
LEAK, FLOOR = 0.2, -0.4  # every activation: LeakyReLU(0.2), then max(x, -0.4)
# the 20 convolutions: output channels and kernel (time, mel); a max-pool (time, mel) follows the marked ones
LAYERS = [(24, (3, 3), None), (24, (1, 3), None), (24, (3, 1), (2, 2)),
          (48, (1, 3), None), (48, (3, 1), None), (48, (1, 3), None), (48, (3, 1), (1, 2)),
          (72, (1, 3), None), (72, (3, 1), None), (72, (1, 3), None), (72, (3, 1), (2, 2)),
          (96, (1, 3), None), (96, (3, 1), None), (96, (1, 3), None), (96, (3, 1), (1, 2)),
          (96, (1, 3), None), (96, (3, 1), None), (96, (1, 3), None), (96, (3, 1), (2, 2)),
          (96, (3, 1), None)]  # fmt: skip
HIDDEN, DROPOUT = 128, 0.3
# the ring keeps the 72 frames before the new ones (the next embedding's first 68, and 4 more so that embeddings
# start on multiples of 8 frames, as windows at an 80 ms stride do) and the last SPAN - 1 embeddings
RING_FRAMES = WINDOW_FRAMES - EMBEDDING_STRIDE + (-WINDOW_FRAMES) % EMBEDDING_STRIDE
# outputs of the ring before the one of the window that starts with the stream: its first embedding starts
# RING_FRAMES before the stream, the window's last one starts (SPAN - 1) * stride - CONTEXT_FRAMES after it
RING_LEAD = (RING_FRAMES + (SPAN - 1) * EMBEDDING_STRIDE - CONTEXT_FRAMES) // EMBEDDING_STRIDE


class EmbeddingNetwork(nn.Module):
    """The frozen embedding network: ``(batch, 32, frames)`` log-mel in dB -> ``(batch, 96, steps)`` embeddings,
    ``steps = (frames - 76) // 8 + 1``. Its weights are buffers: they move with the model, are saved in the
    checkpoint and never trained.

    Args:
        pretrained: Load Google's weights from the installed ``openwakeword`` 0.4 package (else zeros, to be
            filled from a checkpoint).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        cin = 1
        for i, (cout, kernel, _) in enumerate(LAYERS):
            self.register_buffer(f"weight{i}", torch.zeros(cout, cin, *kernel))
            self.register_buffer(f"bias{i}", torch.zeros(cout))
            cin = cout
        self.register_buffer("bn_scale", torch.zeros(LAYERS[0][0]))  # the first layer's batch norm, after a ReLU
        self.register_buffer("bn_shift", torch.zeros(LAYERS[0][0]))
        if pretrained:
            self.load_state_dict(read_weights())

    def forward(self, logmel: Tensor) -> Tensor:
        x = ((logmel + INT16_DB) * SCALE + OFFSET).transpose(1, 2).unsqueeze(1)  # (batch, 1, frames, mels)
        x = F.pad(x, (1, 1))  # the first convolution's mel padding; the others pad the mel axis, never time
        last = len(LAYERS) - 1
        for i, (_, kernel, pool) in enumerate(LAYERS):
            pad = (0, kernel[1] // 2) if i else 0
            x = F.conv2d(x, getattr(self, f"weight{i}"), getattr(self, f"bias{i}"), padding=pad)
            if i == 0:
                x = F.relu(x) * self.bn_scale[:, None, None] + self.bn_shift[:, None, None]
            if i < last:
                x = F.leaky_relu(x, LEAK).clamp_min(FLOOR)
            if pool is not None:
                x = F.max_pool2d(x, pool)
        return x.squeeze(-1)


def read_weights() -> dict[str, Tensor]:
    """Google's weights, as :class:`EmbeddingNetwork` buffers, from ``embedding_model.onnx`` of ``openwakeword``.

    Raises:
        KWSError: one sentence if the package (version 0.4) is not installed.
    """
    try:
        path = Path(importlib.metadata.distribution(PACKAGE).locate_file(WEIGHTS_FILE))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise KWSError("model.name speech_embedding needs Google's embedding weights from the PyPI package "
                       "openwakeword 0.4 (pip install 'openwakeword>=0.4,<0.5', "
                       "which scripts/setup.sh does)")  # fmt: skip
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    values = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    norm = next(n for n in graph.node if n.op_type == "BatchNormalization")
    weights: dict[str, Tensor] = {}
    for i, node in enumerate(convs):
        weights[f"weight{i}"] = values[node.input[1]]
        weights[f"bias{i}"] = values[node.input[2]] if len(node.input) > 2 else torch.zeros(LAYERS[i][0])
    gamma, beta, mean, var = (values[name] for name in norm.input[1:5])
    eps = next(a.f for a in norm.attribute if a.name == "epsilon")
    weights["bn_scale"] = gamma / torch.sqrt(var + eps)
    weights["bn_shift"] = beta - mean * weights["bn_scale"]
    return weights


class SpeechEmbedding(nn.Module):
    """Frozen speech embedding, then a trained classifier over its embeddings.

    The window gets 0.24 s of silence on each side (:data:`CONTEXT_FRAMES`), so its 9 embeddings cover every
    placement of a word in it. The classifier is a convolution over 9 consecutive embeddings, a 1x1 convolution,
    a max over time and a linear layer: on the 1 s windows of this pipeline, a two-layer perceptron of the
    window's 9 embeddings.

    Args:
        n_classes: Output classes.
        n_features: Feature rows per frame: the 32 log-mel bands of :data:`FEATURES`.
        dropout: Dropout of the classifier (default 0.3).
        pretrained: Load Google's weights (``False``: zeros, for a checkpoint to fill).

    Example:
        >>> model = SpeechEmbedding(n_classes=12, n_features=32, pretrained=False)
        >>> model(torch.randn(2, 32, 97) - 30).shape
        torch.Size([2, 12])
    """

    def __init__(self, n_classes: int, n_features: int, dropout: float = DROPOUT, pretrained: bool = True) -> None:
        super().__init__()
        if n_features != FEATURES.n_mels:
            raise KWSError(f"model.name speech_embedding reads {FEATURES.n_mels} log-mel bands, not {n_features} "
                           "feature rows (use its feature settings, as configs/quickstart.yaml does)")  # fmt: skip
        self.embedding = EmbeddingNetwork(pretrained)
        self.classifier = nn.Sequential(
            nn.Conv1d(EMBEDDING_DIM, HIDDEN, SPAN), nn.BatchNorm1d(HIDDEN), nn.ReLU(), nn.Dropout(dropout),
            nn.Conv1d(HIDDEN, HIDDEN, 1), nn.BatchNorm1d(HIDDEN), nn.ReLU(), nn.Dropout(dropout),
        )  # fmt: skip
        self.out = nn.Linear(HIDDEN, n_classes)

    def forward(self, features: Tensor) -> Tensor:
        needed = WINDOW_FRAMES + (SPAN - 1) * EMBEDDING_STRIDE - 2 * CONTEXT_FRAMES  # 9 embeddings with the context
        if features.shape[-1] < needed:
            raise KWSError(f"model.name speech_embedding needs windows of at least {needed} frames, "
                           f"not {features.shape[-1]}")  # fmt: skip
        embeddings = self.embedding(F.pad(features, (CONTEXT_FRAMES, CONTEXT_FRAMES), value=SILENCE_DB))
        return self.out(self.classifier(embeddings).amax(dim=-1))


class EmbeddingRing(nn.Module):
    """The streaming form of a :class:`SpeechEmbedding`: ``(frames, state) -> (window logits, next state)``.

    Frames come in whole steps of 8 (80 ms); each step gives one new embedding and the logits of one window,
    the one that starts ``RING_LEAD`` steps before (:meth:`initial_state` starts the stream, the first
    ``RING_LEAD`` outputs are of windows before it). The state is one ``(batch, state_size)`` tensor: the last
    ``RING_FRAMES`` log-mel frames, in dB above digital silence (so that zeros are silence), then the last
    ``SPAN - 1`` embeddings.

    Args:
        model: The trained model (in eval mode).

    Example:
        >>> ring = EmbeddingRing(SpeechEmbedding(12, 32, pretrained=False).eval())
        >>> logits, state = ring(torch.zeros(1, 32, 16) + SILENCE_DB, ring.initial_state())
        >>> logits.shape, state.shape
        (torch.Size([1, 2, 12]), torch.Size([1, 3072]))
    """

    step_frames, lead_outputs, window_outputs = EMBEDDING_STRIDE, RING_LEAD, 1

    def __init__(self, model: SpeechEmbedding) -> None:
        super().__init__()
        self.model = model
        self.frames_size, self.embeddings_size = FEATURES.n_mels * RING_FRAMES, EMBEDDING_DIM * (SPAN - 1)
        self.state_size = self.frames_size + self.embeddings_size

    def initial_state(self, batch: int = 1) -> Tensor:
        """The state before the first frame: silence, as a window of the windowed form is padded."""
        return torch.zeros(batch, self.state_size)

    def forward(self, frames: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """``(batch, 32, 8 n)`` new frames and the state -> ``(batch, n, n_classes)`` and the next state."""
        past, kept = state[:, : self.frames_size], state[:, self.frames_size :]
        x = torch.cat([past.reshape(-1, FEATURES.n_mels, RING_FRAMES) + SILENCE_DB, frames], dim=2)
        embeddings = torch.cat([kept.reshape(-1, EMBEDDING_DIM, SPAN - 1), self.model.embedding(x)], dim=2)
        logits = self.model.out(self.model.classifier(embeddings).transpose(1, 2))
        following = torch.cat([(x[:, :, x.shape[2] - RING_FRAMES :] - SILENCE_DB).flatten(1),
                               embeddings[:, :, embeddings.shape[2] - SPAN + 1 :].flatten(1)], dim=1)  # fmt: skip
        return logits, following
