"""Augmentation: bounded shifts, noise mixing, masks in training only."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from pipeline.augment import AugmentConfig, SpecAugment, SpecAugmentConfig, WaveAugment
from pipeline.data.datamodule import SpeechCommandsDataModule


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


def test_datamodule_augments_training_batches_only(tone_corpus: Path) -> None:
    dm = SpeechCommandsDataModule(root=str(tone_corpus), cache_dir=None)
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    dm.setup("fit")
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
