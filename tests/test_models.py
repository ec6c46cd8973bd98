"""Models: parameter counts against the papers, and every model can fit a tiny batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.train.augment import SpecAugmentConfig
from pipeline.train.features import FeatureConfig
from pipeline.train.model import KWSModel
from pipeline.train.models import ModelConfig, build_model
from pipeline.train.module import KWSModule

# (model, classes, feature rows per frame, parameters the paper reports)
PAPER_PARAMS = [
    # Kim et al. 2021, Table 2: BC-ResNet-1 and -8, 12 classes, 40 log-mel
    (ModelConfig(name="bcresnet", width=1), 12, 40, 9.2e3),
    (ModelConfig(name="bcresnet", width=8), 12, 40, 321e3),
    # Choi et al. 2019, Table 1: 12 classes, 40 MFCC
    (ModelConfig(name="tcresnet", size="8"), 12, 40, 66e3),
    (ModelConfig(name="tcresnet", size="8-1.5"), 12, 40, 145e3),
    (ModelConfig(name="tcresnet", size="14"), 12, 40, 137e3),
    (ModelConfig(name="tcresnet", size="14-1.5"), 12, 40, 305e3),
    # Majumdar and Ginsburg 2020, Table 1: 30 classes (v1), 64 MFCC
    (ModelConfig(name="matchboxnet", size="3x1x64"), 30, 64, 77e3),
    (ModelConfig(name="matchboxnet", size="3x2x64"), 30, 64, 93e3),
    (ModelConfig(name="matchboxnet", size="6x2x64"), 30, 64, 140e3),
]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("model,classes,rows,paper", PAPER_PARAMS, ids=lambda v: getattr(v, "size", None) or "")
def test_parameter_count_matches_the_paper(model: ModelConfig, classes: int, rows: int, paper: float) -> None:
    encoder = build_model(model, classes, rows)
    assert abs(n_params(encoder) - paper) / paper < 0.03, n_params(encoder)


@pytest.mark.parametrize(
    "model", [ModelConfig(name="bcresnet", width=w) for w in (1, 1.5, 2, 3, 6, 8)]
    + [ModelConfig(name="dscnn", size=s) for s in ("s", "m", "l")]
    + [ModelConfig(name="tcresnet", size=s) for s in ("8", "14")]
    + [ModelConfig(name="matchboxnet", size=s) for s in ("3x1x64", "1x1x8")],
)  # fmt: skip
def test_every_variant_builds_and_runs(model: ModelConfig) -> None:
    module = KWSModule(labels=list("abc"), model=model).eval()
    assert module(torch.zeros(2, 16000)).shape == (2, 3)


@pytest.mark.parametrize(
    "model,features",
    [
        (ModelConfig(name="bcresnet", width=1), FeatureConfig(kind="logmel")),
        (ModelConfig(name="bcresnet", width=1), FeatureConfig(kind="mfcc")),
        (ModelConfig(name="dscnn", size="s"), FeatureConfig(kind="mfcc", n_mfcc=10)),
        (ModelConfig(name="tcresnet", size="8", dropout=0.0), FeatureConfig(kind="mfcc")),
        (ModelConfig(name="matchboxnet", size="3x1x64"), FeatureConfig(kind="mfcc", n_mels=64, n_mfcc=64)),
        (ModelConfig(name="matchboxnet", size="3x1x64", causal=True), FeatureConfig(kind="mfcc")),
        (ModelConfig(name="matchboxnet", size="3x1x64", cmn=True), FeatureConfig(kind="mfcc", n_mfcc=20)),
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
    with pytest.raises(ValueError, match="8, 14, 8-1.5, 14-1.5"):
        KWSModule(labels=["a"], model=ModelConfig(name="tcresnet", size="s"))
    with pytest.raises(ValueError, match="BxRxC"):
        KWSModule(labels=["a"], model=ModelConfig(name="matchboxnet", size="3x64"))
    with pytest.raises(ValueError, match="model.causal is available for matchboxnet only, not tcresnet"):
        KWSModule(labels=["a"], model=ModelConfig(name="tcresnet", causal=True))
    with pytest.raises(ValueError, match="model.cmn needs the whole window, so a causal"):
        KWSModule(labels=["a"], model=ModelConfig(name="matchboxnet", causal=True, cmn=True))


def test_sub_spectral_norm_inference_form_matches_batch_norm() -> None:
    from pipeline.train.models.bcresnet import SubSpectralNorm

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


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a training step outside a Trainer
def test_mixup_blends_waveforms_and_targets() -> None:
    torch.manual_seed(0)
    wave = torch.randn(8, 16000) * torch.logspace(-3, 0, 8)[:, None]  # clips of very different levels
    target = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    labels = ["_silence_", "_unknown_", "yes", "no"]
    plain = KWSModule(labels=labels).eval()  # eval: no SpecAugment masks or dropout draws to compare around
    mixed = KWSModule(labels=labels, mixup=0.4).eval()
    mixed.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    loss = mixed.training_step((wave, target), 0)
    torch.manual_seed(1)  # the same draws: the blend share, then each clip's partner
    share = torch.distributions.Beta(0.4, 0.4).sample().item()
    partner = torch.randperm(8)
    logits = plain(share * wave + (1 - share) * wave[partner])
    expected = share * plain.loss(logits, target) + (1 - share) * plain.loss(logits, target[partner])
    assert 0 < share < 1 and torch.allclose(loss, expected, atol=1e-5)
    assert not torch.allclose(loss, plain.loss(logits, target))  # the targets are blended too


def _with_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with batch-norm statistics and affine terms away from the identity."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize("size", ["3x1x64", "3x2x64", "1x1x8"])
def test_causal_matchboxnet_streams_frame_by_frame_as_it_runs_whole(size: str) -> None:
    """The streaming form, fed any chunking of the frames with its state carried over, gives the frame logits of
    the ordinary run on the whole input; every output frame depends on the past only; and the first window's
    mean is the window classifier's logits (what training sees)."""
    from pipeline.train.models.causal import StreamingForm
    from pipeline.train.models.matchboxnet import MatchboxNet

    torch.manual_seed(0)
    model = _with_statistics(MatchboxNet(5, 40, size, causal=True))
    assert n_params(model) == n_params(MatchboxNet(5, 40, size))  # the same weights, padded differently
    frames = torch.randn(1, 40, 230)
    step = StreamingForm(model)
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        whole = model.frame_logits(frames)
        for chunking in ([1] * 230, [230], list(rng.integers(1, 40, 30)), [97, 1, 2, 130]):
            edges = np.unique(np.minimum(np.cumsum([0, *chunking]), 230))
            state, parts = step.initial_state(), []
            for a, b in zip(edges[:-1], edges[1:]):
                out, state = step(frames[:, :, a:b], state)
                parts.append(out)
            torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-5)
        changed = frames.clone()
        changed[:, :, 150:] += 1.0
        after = model.frame_logits(changed)
        torch.testing.assert_close(after[:, :150], whole[:, :150])
        assert not torch.allclose(after[:, 150:], whole[:, 150:], atol=1e-3)
        torch.testing.assert_close(model(frames[:, :, :98]), whole[:, :98].mean(dim=1), atol=1e-5, rtol=1e-5)
        centred = _with_statistics(MatchboxNet(5, 40, size))  # the paper's model looks ahead: the check can fail
        assert not torch.allclose(centred.trunk(changed)[:, :, :150], centred.trunk(frames)[:, :, :150], atol=1e-3)


def test_a_streaming_model_trains_on_clips_heard_after_another() -> None:
    """With ``stream_context`` a causal model's training logits are those the streaming engine gives the clip's
    window in a stream where the batch's previous clip came just before it; without, the clip's own."""
    from pipeline.runtime.streaming import mean_probs, softmax

    torch.manual_seed(0)
    labels = ["_silence_", "_unknown_", "yes", "no"]
    module = KWSModule(labels=labels, model=ModelConfig(name="matchboxnet", size="1x1x8", causal=True)).eval()
    _with_statistics(module.encoder)
    wave = torch.randn(3, 16000) * 0.1
    with torch.inference_mode():
        trained = module.after_context(wave)
        module.stream_context = False
        torch.testing.assert_close(module.after_context(wave), module(wave))
    model = KWSModel(labels, module.feature_config, module.model_config).eval()
    model.load_state_dict(module.state_dict(), strict=False)
    stream = torch.cat([wave[2], wave[0]]).numpy()  # clip 0 comes after the batch's last clip
    logits, _ = model.frame_logits(model.features(stream), model.initial_state())
    window = mean_probs(logits[:, -98:], 98, 1)[0]
    np.testing.assert_allclose(window, softmax(trained[0].numpy()), atol=1e-5)
    assert not np.allclose(window, softmax(module(wave)[0].detach().numpy()), atol=1e-3)
