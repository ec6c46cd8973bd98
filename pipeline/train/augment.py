"""Training-time augmentation, applied per batch on the training device (never in validation or test)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchaudio.functional as F
import torchaudio.transforms as T
from torch import Tensor, nn

from pipeline.runtime.audio import SAMPLE_RATE

SPEED_STEP = 0.05  # speed factors are drawn on this grid, so each batch needs a handful of cheap resampling kernels
WARP_N_FFT = 512  # STFT of the vocal-tract-length warp: 32 ms Hann windows at 16 kHz, 31 Hz bins ...
WARP_HOP = 256  # ... at 50 % overlap: under half the CPU time of 75 %, for nearly the same warp of a voice
WARP_F_HI = 0.6  # VTLP boundary frequency as a fraction of Nyquist: 4.8 kHz at 16 kHz (Jaitly & Hinton, 2013)


@dataclass
class AugmentConfig:
    """Waveform augmentation.

    Args:
        time_shift_ms: Shift each clip by a uniform random amount in ``[-time_shift_ms, +time_shift_ms]``.
        noise_prob: Probability of mixing a random stretch of background noise into a clip.
        noise_volume: ``[low, high]`` range of the uniform random noise gain.
        noise_snr_db: ``[low, high]`` range of a uniform random signal-to-noise ratio in dB (the clip's RMS over the
            noise stretch's), used instead of ``noise_volume`` when given: noise as loud as a stream's at that SNR,
            whatever the clip's level.
        gain_db: ``[low, high]`` range of a uniform random gain of the whole clip, in dB.
        reverb_prob: Probability of convolving a clip with a synthetic room response (exponentially
            decaying noise after a direct path).
        rt60_s: ``[low, high]`` range of the room's reverberation time, in seconds.
        band_prob: Probability of band-limiting a clip (a random high-pass and low-pass, as microphones
            and phone lines do).
        highpass_hz: ``[low, high]`` range of the high-pass edge.
        lowpass_hz: ``[low, high]`` range of the low-pass edge.
        speed: ``[low, high]`` range of a per-clip speed factor (tempo and pitch together, as a tape played
            faster or slower; drawn on a grid of ``SPEED_STEP``); ``[1, 1]`` turns it off. The clip keeps its
            length: centre-cropped or zero-padded.
        warp: ``[low, high]`` range of a per-clip vocal-tract-length warp factor alpha (VTLP, Jaitly & Hinton
            2013; drawn uniformly): frequencies below ``0.6 * Nyquist * min(alpha, 1) / alpha`` move to alpha
            times themselves, those above follow a straight line to Nyquist, so formants and harmonics move
            (alpha 1.1: 10 % up) while timing, length and loudness stay; ``[1, 1]`` turns it off.
    """

    time_shift_ms: float = 100.0
    noise_prob: float = 0.8
    noise_volume: tuple[float, float] = (0.0, 0.1)
    noise_snr_db: tuple[float, float] | None = None
    gain_db: tuple[float, float] = (0.0, 0.0)
    reverb_prob: float = 0.0
    rt60_s: tuple[float, float] = (0.1, 0.6)
    band_prob: float = 0.0
    highpass_hz: tuple[float, float] = (50.0, 400.0)
    lowpass_hz: tuple[float, float] = (3000.0, 8000.0)
    speed: tuple[float, float] = (1.0, 1.0)
    warp: tuple[float, float] = (1.0, 1.0)


@dataclass
class SpecAugmentConfig:
    """SpecAugment masks on the features (Park et al., 2019).

    Args:
        time_masks: Number of time masks per example.
        time_width: Maximum width of a time mask, in frames.
        freq_masks: Number of feature-row masks per example.
        freq_width: Maximum width of a feature-row mask, in rows.
    """

    time_masks: int = 2
    time_width: int = 20
    freq_masks: int = 2
    freq_width: int = 7


class WaveAugment(nn.Module):
    """Random speed, vocal-tract-length warp, time shift, reverberation, band-limiting, gain and background noise
    for ``(batch, time)`` audio.

    Args:
        config: An :class:`AugmentConfig`.
        noise: 1-D background-noise waveform (all noise files joined); ``None`` disables mixing.
        sample_rate: Audio rate in Hz.

    Example:
        >>> aug = WaveAugment(AugmentConfig(), noise=torch.randn(48000))
        >>> aug(torch.zeros(4, 16000)).shape
        torch.Size([4, 16000])
    """

    def __init__(self, config: AugmentConfig, noise: Tensor | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.config = config
        self.max_shift = int(sample_rate * config.time_shift_ms / 1000)
        self.sample_rate = sample_rate
        self.register_buffer("noise", noise if noise is not None and noise.numel() else None)
        if not 0 < config.warp[0] <= config.warp[1]:
            raise ValueError(f"augment.warp must be a [low, high] range of positive factors, got {list(config.warp)}")

    def forward(self, wave: Tensor) -> Tensor:
        batch, length = wave.shape
        device = wave.device
        if tuple(self.config.speed) != (1.0, 1.0):
            wave = self._speed(wave)
        if tuple(self.config.warp) != (1.0, 1.0):
            wave = self._warp(wave, self._uniform(wave, self.config.warp))
        if self.max_shift:
            shift = torch.randint(-self.max_shift, self.max_shift + 1, (batch, 1), device=device)
            index = torch.arange(length, device=device) - shift
            valid = (index >= 0) & (index < length)
            wave = wave.gather(1, index.clamp(0, length - 1)) * valid
        wave = self._apply_to_some(wave, self.config.reverb_prob, self._reverb)
        wave = self._apply_to_some(wave, self.config.band_prob, self._band_limit)
        low, high = self.config.gain_db
        if high > low:
            gain_db = torch.empty(batch, 1, device=device).uniform_(low, high)
            wave = wave * torch.pow(10.0, gain_db / 20)
        if self.noise is not None and self.config.noise_prob > 0 and self.noise.numel() >= length:
            start = torch.randint(0, self.noise.numel() - length + 1, (batch, 1), device=device)
            noise = self.noise[start + torch.arange(length, device=device)]
            if self.config.noise_snr_db is None:
                volume = torch.empty(batch, 1, device=device).uniform_(*self.config.noise_volume)
            else:
                snr = self._uniform(wave, self.config.noise_snr_db)
                rms = (
                    wave.square().mean(1, keepdim=True) / noise.square().mean(1, keepdim=True).clamp_min(1e-10)
                ).sqrt()
                volume = rms * torch.pow(10.0, -snr / 20)
            volume = volume * (torch.rand(batch, 1, device=device) < self.config.noise_prob)
            wave = wave + volume * noise
        return wave.clamp(-1.0, 1.0)

    @staticmethod
    def _apply_to_some(wave: Tensor, prob: float, effect: Callable[[Tensor], Tensor]) -> Tensor:
        """Apply ``effect`` to each clip with probability ``prob``, computing it for those clips only."""
        chosen = (torch.rand(wave.shape[0], device=wave.device) < prob).nonzero().squeeze(1)
        return wave.index_copy(0, chosen, effect(wave[chosen])) if chosen.numel() else wave

    def _uniform(self, wave: Tensor, bounds: tuple[float, float]) -> Tensor:
        return torch.empty(wave.shape[0], 1, device=wave.device).uniform_(*bounds)

    def _reverb(self, wave: Tensor) -> Tensor:
        batch, length = wave.shape
        ir_len = int(self.config.rt60_s[1] * self.sample_rate)
        t = torch.arange(ir_len, device=wave.device) / self.sample_rate
        rt60 = self._uniform(wave, self.config.rt60_s)
        ir = torch.randn(batch, ir_len, device=wave.device) * torch.exp(-6.91 * t / rt60)  # -60 dB at rt60
        ir[:, 0] = 1.0  # direct path
        ir = ir / ir.norm(dim=1, keepdim=True)
        n = length + ir_len
        wet = torch.fft.irfft(torch.fft.rfft(wave, n) * torch.fft.rfft(ir, n), n)[:, :length]
        return wet * (wave.norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def _speed(self, wave: Tensor) -> Tensor:
        """Play each clip at a random speed: resample it from ``factor`` times the rate, keep the length."""
        low, high = (round(v / SPEED_STEP) for v in self.config.speed)
        steps = torch.randint(low, high + 1, (wave.shape[0],), device=wave.device)
        out = wave.clone()
        length = wave.shape[1]
        for step in steps.unique().tolist():
            if step * SPEED_STEP == 1.0:
                continue
            chosen = (steps == step).nonzero().squeeze(1)
            played = F.resample(wave[chosen], round(self.sample_rate * step * SPEED_STEP), self.sample_rate)
            offset = (played.shape[1] - length) // 2
            if offset >= 0:
                out[chosen] = played[:, offset : offset + length]
            else:
                out[chosen] = nn.functional.pad(played, (-offset, length - played.shape[1] + offset))
        return out

    @staticmethod
    def _vtlp(freq: Tensor, alpha: Tensor, nyquist: float) -> Tensor:
        """The VTLP map: ``f * alpha`` up to ``f_hi * min(alpha, 1) / alpha``, then a straight line to Nyquist.

        Its inverse is the same map with ``1 / alpha``.
        """
        f_hi = WARP_F_HI * nyquist * alpha.clamp(max=1.0)  # where the boundary lands
        boundary = f_hi / alpha
        above = nyquist - (nyquist - f_hi) / (nyquist - boundary) * (nyquist - freq)
        return torch.where(freq <= boundary, freq * alpha, above)

    def _warp(self, wave: Tensor, alpha: Tensor) -> Tensor:
        """Warp each clip's spectrum along frequency by its ``(batch, 1)`` factor ``alpha`` (VTLP).

        The STFT magnitude of output bin ``f`` is read, by linear interpolation between bins, at the inverse map
        of ``f``. The phase is a phase vocoder's: the instantaneous frequency of the nearest source bin (from its
        phase advance between frames) goes through the map and is accumulated over frames. (Keeping the original
        phase does not move a steady tone: the phase advance between overlapping frames still says the old
        frequency, and the overlap-add puts it back there, at half the level.) Each clip then gets its input's
        energy back, turned down only where its peak would pass ``max(input peak, 1)``: the warp never makes a
        clip clip. Real-valued arithmetic throughout: complex ``abs``/``angle``/``polar`` are several times slower
        on CPU.
        """
        length = wave.shape[1]
        x = wave.float()
        window = torch.hann_window(WARP_N_FFT, device=wave.device)
        spec = torch.stft(x, WARP_N_FFT, WARP_HOP, window=window, return_complex=True).transpose(1, 2)
        real, imag = spec.real.contiguous(), spec.imag.contiguous()  # (batch, frames, bins)
        magnitude, phase = torch.hypot(real, imag), torch.atan2(imag, real)
        bins = spec.shape[2]
        nyquist = self.sample_rate / 2
        bin_hz = nyquist / (bins - 1)
        k = torch.arange(bins, device=wave.device)
        source = (self._vtlp(k * bin_hz, 1 / alpha, nyquist) / bin_hz).clamp(0, bins - 1)  # (batch, bins), in bins
        low = source.floor().long().clamp(max=bins - 2)
        frac = (source - low).unsqueeze(1)

        def at(index: Tensor, of: Tensor) -> Tensor:  # of[b, t, index[b, f]]
            return of.gather(2, index.unsqueeze(1).expand(-1, of.shape[1], -1))

        magnitude = at(low, magnitude) * (1 - frac) + at(low + 1, magnitude) * frac
        centre = (2 * math.pi * WARP_HOP / WARP_N_FFT) * k  # each bin centre's phase advance per hop
        advance = phase.diff(dim=1) - centre
        advance = advance - 2 * math.pi * torch.round(advance / (2 * math.pi))
        nearest = source.round().long()
        hz = at(nearest, advance + centre).mul_(self.sample_rate / (2 * math.pi * WARP_HOP)).clamp_(0, nyquist)
        step = self._vtlp(hz, alpha.unsqueeze(2), nyquist).mul_(2 * math.pi * WARP_HOP / self.sample_rate)
        start = at(nearest, phase[:, :1])
        phase = torch.cat([start, step.remainder_(2 * math.pi).cumsum(dim=1).add_(start)], dim=1)
        warped = torch.complex(magnitude * phase.cos(), magnitude * phase.sin()).transpose(1, 2)
        out = torch.istft(warped, WARP_N_FFT, WARP_HOP, window=window, length=length)
        gain = x.norm(dim=1, keepdim=True) / out.norm(dim=1, keepdim=True).clamp_min(1e-8)
        limit = x.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
        gain = torch.minimum(gain, limit / out.abs().amax(dim=1, keepdim=True).clamp_min(1e-8))
        return (out * gain).to(wave.dtype)

    def _band_limit(self, wave: Tensor) -> Tensor:
        length = wave.shape[1]
        freqs = torch.fft.rfftfreq(length, 1 / self.sample_rate).to(wave.device)
        low, high = self._uniform(wave, self.config.highpass_hz), self._uniform(wave, self.config.lowpass_hz)
        gain = torch.sigmoid((freqs - low) / 20.0) * torch.sigmoid((high - freqs) / 100.0)  # soft edges
        return torch.fft.irfft(torch.fft.rfft(wave) * gain, length)


class SpecAugment(nn.Module):
    """Independent time and feature-row masks per example on ``(batch, features, frames)``; a no-op in eval.

    Args:
        config: A :class:`SpecAugmentConfig`.
    """

    def __init__(self, config: SpecAugmentConfig) -> None:
        super().__init__()
        self.config = config
        self.time = T.TimeMasking(config.time_width, iid_masks=True) if config.time_width else None
        self.freq = T.FrequencyMasking(config.freq_width, iid_masks=True) if config.freq_width else None

    def forward(self, features: Tensor) -> Tensor:
        if not self.training:
            return features
        x = features.unsqueeze(1)
        for mask, count in ((self.time, self.config.time_masks), (self.freq, self.config.freq_masks)):
            for _ in range(count if mask is not None else 0):
                x = mask(x)
        return x.squeeze(1)
