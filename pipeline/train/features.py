"""Front end: waveform -> log-mel or MFCC frames, streaming-safe.

Every frame depends only on its own window of samples (no centring, no per-input normalisation such as
``AmplitudeToDB(top_db=80)``), so the features of a long signal equal the features of its pieces.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
import torchaudio.transforms as T
from torch import Tensor, nn

from pipeline.errors import KWSError
from pipeline.runtime.audio import SAMPLE_RATE, frame_count

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
        n_fft: FFT size in samples (default: the window's length). A frame then holds ``n_fft`` samples with the
            window at its centre, as ``torch.stft`` pads it.
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
    n_fft: int | None = None
    n_mels: int = N_MELS
    n_mfcc: int = N_MFCC
    f_min: float = F_MIN
    f_max: float = F_MAX
    log_floor: float = LOG_FLOOR


def _power_spectrum(frames: Tensor, window: Tensor, n: int, n_bins: int) -> Tensor:
    """``(batch, frames, n)`` frames -> ``(batch, frames, n_bins)`` power of their one-sided DFT under ``window``
    (``n`` samples), in ops that ONNX Runtime runs fast: a two-stage (Cooley-Tukey) DFT of
    ``n = n1 * n2`` points as small matrix products, about a fifth of the arithmetic of the direct DFT."""
    n2 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    n1 = n // n2
    k2 = -(-n_bins // n1)
    i1, i2 = torch.arange(n1, dtype=torch.float64), torch.arange(n2, dtype=torch.float64)
    inner = 2 * math.pi * i1[:, None] * i1[None] / n1  # (k1, i1): DFT of n1 points
    twiddle = 2 * math.pi * i1[:, None] * i2[None] / n  # (k1, i2)
    outer = 2 * math.pi * i2[:, None] * torch.arange(k2, dtype=torch.float64)[None] / n2  # (i2, k2)
    stage1 = torch.cat([torch.cos(inner), -torch.sin(inner)]).float()
    cos_t, sin_t = torch.cos(twiddle).float(), torch.sin(twiddle).float()
    stage3 = torch.cat([torch.cat([torch.cos(outer), -torch.sin(outer)], 1),
                        torch.cat([torch.sin(outer), torch.cos(outer)], 1)]).float()  # fmt: skip
    x = (frames * window).reshape(frames.size(0), frames.size(1), n1, n2)  # x[..., i1, i2] = frame[n2 * i1 + i2]
    b = stage1 @ x  # (..., 2 n1, n2): real and imaginary parts
    re, im = b[..., :n1, :], b[..., n1:, :]
    re, im = re * cos_t + im * sin_t, im * cos_t - re * sin_t
    y = torch.cat([re, im], -1) @ stage3  # (..., k1, 2 k2): bin k1 + n1 * k2
    power = y[..., :k2].square() + y[..., k2:].square()
    return power.transpose(-1, -2).reshape(power.size(0), power.size(1), -1)[..., :n_bins]


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
        window = round(config.sample_rate * config.window_ms / 1000)
        self.win_length = config.n_fft or window  # samples per frame
        self.hop_length = round(config.sample_rate * config.hop_ms / 1000)
        if not 0 < self.hop_length <= window:
            raise KWSError("features.hop_ms must be positive and no longer than features.window_ms")
        if self.win_length < window:
            raise KWSError(f"features.n_fft ({config.n_fft}) cannot be shorter than the window ({window} samples)")
        self.melspec = T.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=self.win_length,
            win_length=window,
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
        return frame_count(n_samples, self.win_length, self.hop_length)

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
        """The mel power spectrum as ONNX exports it fast (ONNX Runtime's STFT has no fast path for 480-point
        frames): frames cut from blocks of ``gcd(frame, hop)`` samples, then :func:`_power_spectrum`; the same
        values as ``melspec`` to float rounding. The audio must hold a whole number of frames,
        ``(frames - 1) * hop + frame`` samples (:class:`~pipeline.runtime.onnx_model.OnnxModel` cuts it so)."""
        size = math.gcd(self.win_length, self.hop_length)
        per_frame, per_hop = self.win_length // size, self.hop_length // size
        blocks = waveform.reshape(waveform.size(0), -1, size)
        span = blocks.size(1) - per_frame + 1  # block offsets at which a frame can start
        frames = torch.cat([blocks[:, i : span + i : per_hop] for i in range(per_frame)], -1)
        spectrogram = self.melspec.spectrogram
        left = (self.win_length - spectrogram.win_length) // 2
        window = torch.hann_window(spectrogram.win_length, dtype=torch.float64)  # melspec's, more precisely
        window = F.pad(window, (left, self.win_length - spectrogram.win_length - left)).float()  # as torch.stft
        power = _power_spectrum(frames, window, self.win_length, self.win_length // 2 + 1)  # (batch, frames, bins)
        return torch.matmul(power, self.melspec.mel_scale.fb).transpose(1, 2)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
