"""Front end: waveform -> log-mel or MFCC frames, streaming-safe.

Every frame depends only on its own window of samples (no centring, no per-input normalisation such as
``AmplitudeToDB(top_db=80)``), so the features of a long signal equal the features of its pieces.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torchaudio.functional as AF
import torchaudio.transforms as T
from torch import Tensor, nn

from pipeline.errors import KWSError

from pipeline.audio import SAMPLE_RATE

WINDOW_MS = 30.0
HOP_MS = 10.0
N_MELS = 40
N_MFCC = 40
F_MIN = 20.0
F_MAX = 7600.0
LOG_FLOOR = 1e-6  # power floor before the log: -60 dB, well below 16-bit quantisation noise


@dataclass
class FeatureConfig:
    """Front-end settings; stored in every checkpoint.

    Args:
        kind: ``mfcc`` (DCT of the log-mel energies) or ``logmel``.
        sample_rate: Audio rate in Hz.
        window_ms: Analysis window length (Hann) in milliseconds.
        hop_ms: Step between frames in milliseconds.
        n_mels: Number of mel bands (Slaney scale and area normalisation, as librosa).
        n_mfcc: Number of cepstral coefficients kept (``mfcc`` only).
        f_min: Lowest band edge in Hz.
        f_max: Highest band edge in Hz.
        log_floor: Power added floor before ``10 * log10``.
    """

    kind: Literal["mfcc", "logmel"] = "mfcc"
    sample_rate: int = SAMPLE_RATE
    window_ms: float = WINDOW_MS
    hop_ms: float = HOP_MS
    n_mels: int = N_MELS
    n_mfcc: int = N_MFCC
    f_min: float = F_MIN
    f_max: float = F_MAX
    log_floor: float = LOG_FLOOR


def _windowed_dft(n: int) -> Tensor:
    """``(2 * bins, 1, n)`` convolution kernels: the real and imaginary parts of the one-sided DFT of an
    ``n``-sample frame under a periodic Hann window (torch.stft's)."""
    k = torch.arange(n // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * torch.arange(n, dtype=torch.float64)[None] / n
    window = torch.hann_window(n, dtype=torch.float64)
    return torch.cat([torch.cos(angle), -torch.sin(angle)]).mul(window).float()[:, None]


class FrontEnd(nn.Module):
    """Streaming-safe MFCC / log-mel front end, computed batched on the module's device.

    Args:
        config: A :class:`FeatureConfig` (defaults: MFCC, 16 kHz, 30 ms window, 10 ms hop,
            40 mel bands, 40 coefficients).

    Example:
        >>> fe = FrontEnd()
        >>> fe(torch.randn(8, 16000)).shape
        torch.Size([8, 40, 98])
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FeatureConfig()
        if config.kind not in ("mfcc", "logmel"):
            raise KWSError(f"features.kind must be 'mfcc' or 'logmel', not {config.kind!r}")
        if config.kind == "mfcc" and config.n_mfcc > config.n_mels:
            raise KWSError(f"features.n_mfcc ({config.n_mfcc}) cannot exceed features.n_mels ({config.n_mels})")
        self.win_length = round(config.sample_rate * config.window_ms / 1000)
        self.hop_length = round(config.sample_rate * config.hop_ms / 1000)
        if not 0 < self.hop_length <= self.win_length:
            raise KWSError("features.hop_ms must be positive and no longer than features.window_ms")
        self.melspec = T.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=self.win_length,
            win_length=self.win_length,
            hop_length=self.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            center=False,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )
        if config.kind == "mfcc":
            self.register_buffer("dct", AF.create_dct(config.n_mfcc, config.n_mels, norm="ortho"), persistent=False)
        else:
            self.dct = None

    @property
    def n_features(self) -> int:
        """Number of feature rows per frame."""
        return self.config.n_mfcc if self.config.kind == "mfcc" else self.config.n_mels

    def num_frames(self, n_samples: int) -> int:
        """Number of complete frames in ``n_samples`` samples."""
        return 0 if n_samples < self.win_length else 1 + (n_samples - self.win_length) // self.hop_length

    def forward(self, waveform: Tensor) -> Tensor:
        """Map ``(..., time)`` audio to ``(..., n_features, frames)`` features in dB-scaled units."""
        frames = self.num_frames(waveform.shape[-1])
        if frames == 0:
            return waveform.new_zeros(*waveform.shape[:-1], self.n_features, 0)
        mel = self.melspec(waveform) if not torch.onnx.is_in_onnx_export() else self._exportable_melspec(waveform)
        logmel = 10.0 * torch.log10(mel.clamp_min(self.config.log_floor))
        if self.dct is None:
            return logmel
        return torch.matmul(logmel.transpose(-1, -2), self.dct).transpose(-1, -2)

    def _exportable_melspec(self, waveform: Tensor) -> Tensor:
        """The mel power spectrum as ONNX exports it fast: the windowed DFT of every frame as one strided
        convolution (ONNX Runtime's STFT has no fast path for the 480-point frames), the same values as
        ``melspec`` to float rounding."""
        dft = _windowed_dft(self.win_length)
        n_bins = dft.shape[0] // 2
        parts = torch.nn.functional.conv1d(waveform.reshape(-1, 1, waveform.shape[-1]), dft, stride=self.hop_length)
        power = parts[:, :n_bins].square() + parts[:, n_bins:].square()  # (batch, bins, frames)
        mel = torch.matmul(power.transpose(1, 2), self.melspec.mel_scale.fb).transpose(1, 2)
        return mel.reshape(*waveform.shape[:-1], *mel.shape[1:])

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
