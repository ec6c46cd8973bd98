"""Augmentation: bounded shifts, noise mixing, speed, vocal-tract-length warp, masks in training only."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor

from pipeline.train.augment import AugmentConfig, SpecAugment, SpecAugmentConfig, WaveAugment
from pipeline.train.datamodule import SpeechCommandsDataModule


def test_time_shift_is_bounded_and_keeps_the_signal() -> None:
    torch.manual_seed(0)
    wave = torch.zeros(64, 16000)
    wave[:, 8000] = 1.0  # one click in the middle
    out = WaveAugment(AugmentConfig(time_shift_ms=100, noise_prob=0.0))(wave)
    where = out.argmax(dim=1) - 8000
    assert where.abs().max() <= 1600 and where.unique().numel() > 10
    assert torch.allclose(out.sum(dim=1), torch.ones(64))


def test_noise_mixing_probability_and_volume() -> None:
    torch.manual_seed(0)
    noise = torch.ones(48000)
    config = AugmentConfig(time_shift_ms=0, noise_prob=0.5, noise_volume=(0.05, 0.1))
    out = WaveAugment(config, noise)(torch.zeros(400, 16000))
    level = out[:, 0]
    mixed = level > 0
    assert 0.4 < mixed.float().mean() < 0.6
    assert level[mixed].min() >= 0.05 and level.max() <= 0.1
    assert torch.all(out == level[:, None])  # a constant noise gives a constant offset per clip


def test_noise_at_a_signal_to_noise_ratio_follows_the_clip_level() -> None:
    torch.manual_seed(0)
    noise = torch.randn(48000)
    config = AugmentConfig(time_shift_ms=0, noise_prob=1.0, noise_snr_db=(5.0, 15.0))
    clips = torch.sin(torch.arange(16000) / 5.0).repeat(300, 1) * torch.logspace(-2.5, -0.5, 300)[:, None]
    added = WaveAugment(config, noise)(clips) - clips
    snr = 10 * torch.log10(clips.square().mean(1) / added.square().mean(1))
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 15.0 + 1e-3 and snr.std() > 2  # drawn over the whole range
    assert torch.corrcoef(torch.stack([clips.std(1), added.std(1)]))[0, 1] > 0.8  # louder clips, louder noise


def test_spec_augment_only_in_training() -> None:
    torch.manual_seed(0)
    spec = SpecAugment(SpecAugmentConfig(time_masks=2, time_width=20, freq_masks=2, freq_width=7))
    x = torch.randn(16, 40, 98) + 10
    spec.train()
    masked = spec(x)
    assert (masked == 0).any() and masked.shape == x.shape
    assert not torch.equal(masked[0], masked[1])  # independent masks per example
    spec.eval()
    assert torch.equal(spec(x), x)


@pytest.mark.parametrize("augment", [{}, {"time_shift_ms": 0, "noise_prob": 0, "warp": [0.9, 1.1]}],
                         ids=["default", "warp-only"])  # fmt: skip
def test_datamodule_augments_training_batches_only(tone_corpus: Path, augment: dict) -> None:
    dm = SpeechCommandsDataModule(root=str(tone_corpus), cache_dir=None, augment=augment)
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    dm.setup("fit")
    assert isinstance(dm.augmenter, WaveAugment) and dm.augmenter.config == AugmentConfig(**augment)
    batch = next(iter(dm.val_dataloader()))
    for stage in ("validating", "testing", "sanity_checking"):
        setattr(dm.trainer, stage, True)
        out = dm.on_after_batch_transfer(batch, 0)
        assert torch.equal(out[0], batch[0]) and torch.equal(out[1], batch[1]), stage
    dm.trainer.training = True
    out = dm.on_after_batch_transfer(batch, 0)
    assert not torch.equal(out[0], batch[0]) and torch.equal(out[1], batch[1])  # the same labels, new audio


def test_reverb_and_band_limiting() -> None:
    torch.manual_seed(0)
    rate = 16000
    t = torch.arange(rate) / rate
    tone = 0.3 * torch.sin(2 * torch.pi * 6000 * t) * (t < 0.3)
    config = AugmentConfig(time_shift_ms=0, noise_prob=0, reverb_prob=1.0, rt60_s=(0.4, 0.5))
    wet = WaveAugment(config)(tone.repeat(4, 1))
    assert wet[:, 6400:].abs().max() > 1e-3  # a tail after the tone has stopped
    assert torch.allclose(wet.norm(dim=1), tone.norm().expand(4), rtol=1e-3)  # loudness kept
    config = AugmentConfig(time_shift_ms=0, noise_prob=0, band_prob=1.0, lowpass_hz=(3000, 4000))
    limited = WaveAugment(config)(tone.repeat(4, 1))
    assert (limited.norm(dim=1) < 0.01 * tone.norm()).all()  # 6 kHz is above every low-pass edge


def test_speed_perturbation_scales_pitch_and_keeps_the_length() -> None:
    rate = 16000
    t = torch.arange(rate) / rate
    tone = 0.3 * torch.sin(2 * torch.pi * 1000 * t)
    config = AugmentConfig(time_shift_ms=0, noise_prob=0, speed=(1.2, 1.2))
    fast = WaveAugment(config)(tone.repeat(2, 1))
    assert fast.shape == (2, rate)
    peak = torch.fft.rfft(fast[0, 4000:12000]).abs().argmax().item() * rate / 8000
    assert abs(peak - 1200) < 10  # played 1.2 times faster: 1 kHz becomes 1.2 kHz
    torch.manual_seed(0)
    config = AugmentConfig(time_shift_ms=0, noise_prob=0, speed=(0.8, 1.2))
    first = WaveAugment(config)(tone.repeat(16, 1))
    torch.manual_seed(0)
    assert torch.equal(first, WaveAugment(config)(tone.repeat(16, 1)))  # deterministic under a seed
    assert len({round(float(x.abs().sum()), 1) for x in first}) > 3  # clips get different speeds


RATE = 16000
TIME = torch.arange(RATE) / RATE
HARMONICS = (300.0, 600.0, 1200.0)


def _warped(wave: Tensor, alpha: float) -> Tensor:
    """``wave`` through ``WaveAugment`` with only the warp on, at a fixed factor."""
    return WaveAugment(AugmentConfig(time_shift_ms=0, noise_prob=0, warp=(alpha, alpha)))(wave)


def _spectrum(wave: Tensor) -> tuple[Tensor, Tensor]:
    """Power spectrum of a clip's middle 0.75 s (Hann window; 1.33 Hz resolution) and its frequencies."""
    middle = wave[2000:14000]
    return torch.fft.rfft(middle * torch.hann_window(middle.numel())).abs() ** 2, torch.fft.rfftfreq(12000, 1 / RATE)


def test_warp_is_off_by_default_and_then_draws_nothing() -> None:
    """Warp [1, 1] (the default) leaves the other augmentations' batches and random stream as they were."""
    assert AugmentConfig().warp == (1.0, 1.0)
    wave = 0.3 * torch.randn(8, RATE).clamp(-3, 3)
    identity = AugmentConfig(time_shift_ms=0, noise_prob=0)
    assert torch.equal(WaveAugment(identity)(wave), wave)  # not even an STFT round trip
    recipe = {"gain_db": (-10.0, 5.0), "reverb_prob": 0.3, "band_prob": 0.3, "speed": (0.85, 1.15)}
    runs = []
    for warp in (None, (1.0, 1.0), [1, 1], (0.9, 1.1)):  # [1, 1]: as YAML or the command line give it
        torch.manual_seed(0)
        config = AugmentConfig(**recipe) if warp is None else AugmentConfig(**recipe, warp=warp)
        runs.append((WaveAugment(config, noise=torch.randn(3 * RATE))(wave), torch.get_rng_state()))
    (out, state), *others = runs
    for other_out, other_state in others[:2]:
        assert torch.equal(other_out, out) and torch.equal(other_state, state)
    assert not torch.equal(others[2][0], out) and not torch.equal(others[2][1], state)  # on: it draws, it changes


def test_warp_keeps_shape_and_dtype_and_is_seeded() -> None:
    config = AugmentConfig(time_shift_ms=0, noise_prob=0, warp=(0.9, 1.1))
    tone = 0.3 * torch.sin(2 * math.pi * 440 * TIME)
    for dtype in (torch.float32, torch.float64):
        out = WaveAugment(config)(tone.repeat(4, 1).to(dtype))
        assert out.shape == (4, RATE) and out.dtype == dtype
    runs = {}
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.setdefault(seed, []).append(WaveAugment(config)(tone.repeat(8, 1)))
    assert torch.equal(*runs[0])  # the same generator state, the same batch
    assert not torch.allclose(runs[0][0], runs[1][0], atol=1e-3)  # another seed, other factors
    peaks = set()
    for clip in runs[0][0]:
        power, freqs = _spectrum(clip)
        peaks.add(round(freqs[power.argmax()].item()))
    assert len(peaks) > 4  # each clip its own factor: 440 Hz lands in as many places


@pytest.mark.parametrize("alpha", [1.1, 0.9])
def test_warp_moves_harmonics_by_alpha(alpha: float) -> None:
    """A 300/600/1200 Hz harmonic signal comes out at alpha times those frequencies, with all its energy there.

    Tolerance 1 %: ten times finer than the 10 % move, and above the measurement's resolution (1.33 Hz, 0.4 % of
    330 Hz) plus the phase vocoder's frequency estimate (exact for a steady tone, up to rounding).
    """
    signal = 0.2 * sum(torch.sin(2 * math.pi * f * TIME) for f in HARMONICS)
    out = _warped(signal.repeat(2, 1), alpha)[0]
    power, freqs = _spectrum(out)
    for f in HARMONICS:
        band = (freqs > 0.8 * f) & (freqs < 1.25 * f)
        peak = freqs[band][power[band].argmax()].item()
        assert abs(peak - alpha * f) < 0.01 * alpha * f, (f, peak)
    near = torch.zeros_like(freqs, dtype=torch.bool)
    for f in HARMONICS:
        near |= (freqs - alpha * f).abs() < 0.01 * alpha * f
    assert power[near].sum() > 0.95 * power.sum()  # nothing left at the old frequencies, nothing smeared
    assert torch.allclose(out.norm(), signal.norm(), rtol=1e-3)  # loudness kept


@pytest.mark.parametrize(("alpha", "expected_hz"), [(1.1, 7120.0), (0.9, 6850.0)])
def test_warp_above_the_boundary_keeps_the_band_edge(alpha: float, expected_hz: float) -> None:
    """Above the boundary the map is the line to Nyquist: no energy folds over it, the top band is not emptied.

    Boundary ``4800 * min(alpha, 1) / alpha`` Hz: 4363.6 for 1.1, 4800 for 0.9. A 7 kHz tone goes to
    ``8000 - (8000 - 4800) / (8000 - 4363.6) * 1000 = 7120`` Hz and ``8000 - (8000 - 4320) / (8000 - 4800) * 1000
    = 6850`` Hz.
    """
    tone = 0.3 * torch.sin(2 * math.pi * 7000 * TIME)
    power, freqs = _spectrum(_warped(tone.repeat(2, 1), alpha)[0])
    assert abs(freqs[power.argmax()].item() - expected_hz) < 5
    torch.manual_seed(0)
    noise = 0.1 * torch.randn(8, RATE)
    top = torch.fft.rfftfreq(RATE, 1 / RATE) > 7500

    def top_share(wave: Tensor) -> float:
        power = torch.fft.rfft(wave).abs().pow(2).sum(0)
        return float(power[top].sum() / power.sum())

    assert 0.8 < top_share(_warped(noise, alpha)) / top_share(noise) < 1.25  # white stays white up to Nyquist


def test_warp_keeps_timing_and_never_clips() -> None:
    burst = 0.5 * torch.sin(2 * math.pi * 1000 * TIME) * ((TIME >= 0.4) & (TIME < 0.6))
    for alpha in (0.9, 1.1):
        energy = _warped(burst.repeat(2, 1), alpha)[0] ** 2
        assert energy.shape == (RATE,)
        assert energy[(TIME >= 0.4) & (TIME < 0.6)].sum() > 0.95 * energy.sum()  # the burst stays where it was
        assert energy[(TIME < 0.4 - 0.032) | (TIME >= 0.6 + 0.032)].sum() < 1e-6 * energy.sum()  # one window at most
    # A full-scale square wave: its harmonics come out with other relative phases, and at the same energy it
    # would peak far above 1; the warp turns it down instead, so the final clamp has nothing to cut.
    square = 0.9 * torch.sign(torch.sin(2 * math.pi * 200 * TIME))
    out = WaveAugment(AugmentConfig())._warp(square.repeat(2, 1), torch.full((2, 1), 1.1))  # before the clamp
    assert out.abs().max() <= 1.0 + 1e-6 and (out.norm(dim=1) < square.norm()).all()


def test_warp_range_is_checked() -> None:
    for warp in ((0.0, 1.1), (1.1, 0.9)):
        with pytest.raises(ValueError, match="augment.warp"):
            WaveAugment(AugmentConfig(warp=warp))
