"""Models: parameter counts against the papers, and every model can fit a tiny batch."""

from __future__ import annotations

import pytest
import torch

from pipeline.augment import SpecAugmentConfig
from pipeline.features import FeatureConfig
from pipeline.models import ModelConfig
from pipeline.module import KWSModule

PAPER_PARAMS = {1: 9.2e3, 8: 321e3}  # BC-ResNet, 12 classes (Kim et al. 2021, Table 2)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("width", sorted(PAPER_PARAMS))
def test_bcresnet_parameter_count(width: int) -> None:
    module = KWSModule(labels=[str(i) for i in range(12)], model=ModelConfig(name="bcresnet", width=width))
    assert abs(n_params(module.encoder) - PAPER_PARAMS[width]) / PAPER_PARAMS[width] < 0.05


def test_all_widths_build_and_run() -> None:
    for width in (1, 1.5, 2, 3, 6, 8):
        module = KWSModule(labels=list("abc"), model=ModelConfig(name="bcresnet", width=width)).eval()
        assert module(torch.zeros(2, 16000)).shape == (2, 3)


@pytest.mark.parametrize(
    "model,features",
    [
        (ModelConfig(name="bcresnet", width=1), FeatureConfig(kind="logmel")),
        (ModelConfig(name="bcresnet", width=1), FeatureConfig(kind="mfcc")),
        (ModelConfig(name="dscnn", size="s"), FeatureConfig(kind="mfcc", n_mfcc=10)),
    ],
)
def test_overfits_a_tiny_batch(model: ModelConfig, features: FeatureConfig) -> None:
    torch.manual_seed(0)
    labels = ["a", "b", "c", "d"]
    no_masks = SpecAugmentConfig(time_masks=0, freq_masks=0)
    module = KWSModule(labels=labels, model=model, features=features, spec_augment=no_masks)
    t = torch.arange(16000) / 16000
    wave = torch.stack([0.3 * torch.sin(2 * torch.pi * (300 + 400 * (i % 4)) * t * (1 + 0.01 * i)) for i in range(8)])
    target = torch.arange(8) % 4
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    for _ in range(100):  # enough for the batch-norm running statistics to settle too
        opt.zero_grad()
        loss = module.loss(module(wave), target)
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        assert (module(wave).argmax(1) == target).all()
    assert loss.item() < 0.05


def test_bad_model_settings_are_explained() -> None:
    with pytest.raises(ValueError, match="width"):
        KWSModule(labels=["a"], model=ModelConfig(width=5))
    with pytest.raises(ValueError, match="multiple of 40"):
        KWSModule(labels=["a"], features=FeatureConfig(n_mfcc=10), model=ModelConfig(name="bcresnet"))


def test_sub_spectral_norm_inference_form_matches_batch_norm() -> None:
    from pipeline.models.bcresnet import SubSpectralNorm

    torch.manual_seed(0)
    ssn = SubSpectralNorm(4)
    ssn.train()
    for _ in range(5):
        ssn(torch.randn(8, 4, 20, 30) * 3 + 1)  # running statistics away from 0 and 1
    ssn.bn.weight.data.uniform_(0.5, 2.0)
    ssn.bn.bias.data.uniform_(-1.0, 1.0)
    ssn.eval()
    x = torch.randn(2, 4, 20, 30)
    reference = ssn.bn(x.reshape(2, 20, 4, 30)).reshape(2, 4, 20, 30)
    torch.testing.assert_close(ssn(x), reference, atol=1e-5, rtol=1e-5)
