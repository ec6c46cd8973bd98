"""Front end: agreement with librosa, chunk consistency, no per-input normalisation."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from pipeline.runtime.onnx_model import OnnxModel
from pipeline.runtime.streaming import FeatureStream
from pipeline.train.features import FeatureConfig, FrontEnd
from pipeline.train.model import KWSModel
from pipeline.train.models import ModelConfig

# float32 STFT here against librosa in float64: the dB values agree to about 1e-4 dB on these signals
# (measured); 2e-3 dB leaves room for other BLAS/FFT builds while still catching any change of scale,
# window, filter bank, log floor or DCT, each of which moves values by whole dB.
LIBROSA_TOLERANCE_DB = 2e-3


def _signal(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    loud = 0.5 * np.sin(2 * np.pi * 440 * t) * (t < seconds / 2)
    quiet = 0.01 * np.sin(2 * np.pi * 1500 * t) * (t >= seconds / 2)
    return (loud + quiet + 0.002 * rng.normal(size=t.size)).astype(np.float32)


@pytest.mark.parametrize("kind", ["mfcc", "logmel"])
def test_matches_librosa(kind: str) -> None:
    config = FeatureConfig(kind=kind)
    y = _signal()
    ours = FrontEnd(config)(torch.from_numpy(y)).numpy()
    mel = librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=16000, n_fft=480, hop_length=160, win_length=480, window="hann",
        center=False, power=2.0, n_mels=40, fmin=config.f_min, fmax=config.f_max, htk=False, norm="slaney",
    )  # fmt: skip
    ref = librosa.power_to_db(mel, ref=1.0, amin=config.log_floor, top_db=None)
    if kind == "mfcc":
        ref = librosa.feature.mfcc(S=ref, n_mfcc=40, dct_type=2, norm="ortho")
    assert ours.shape == ref.shape == (40, 98)
    assert np.abs(ours - ref).max() < LIBROSA_TOLERANCE_DB


@pytest.mark.parametrize("chunk", [1, 7, 160, 479, 1234, 16000])
def test_stream_equals_whole(chunk: int) -> None:
    model = KWSModel(["_silence_", "yes"], FeatureConfig(), ModelConfig())
    y = _signal(1.7, seed=chunk)
    whole = model.features(y)
    stream = FeatureStream(model)
    pieces = np.concatenate([stream.push(y[i : i + chunk]) for i in range(0, len(y), chunk)], axis=-1)
    assert pieces.shape == whole.shape
    np.testing.assert_allclose(pieces, whole, atol=1e-3, rtol=1e-5)
    assert len(stream.pending) < model.win_length  # bounded state


@pytest.mark.parametrize("kind,n_fft", [("mfcc", None), ("logmel", None), ("logmel", 512)])
def test_the_exported_front_end_computes_the_same_features(kind: str, n_fft: int | None) -> None:
    """The ONNX graph's front end (a DFT convolution) equals torch.stft's, window by window and streamed, also
    with a frame longer than its window (``n_fft``) and not a whole number of hops."""
    features = FeatureConfig(kind=kind, n_mels=64, n_mfcc=64, n_fft=n_fft)
    model = KWSModel(["_silence_", "yes"], features, ModelConfig("matchboxnet"))
    exported = OnnxModel(model.to_onnx())
    y = np.stack([_signal(1.0, seed=1), _signal(1.0, seed=2)])
    np.testing.assert_allclose(exported.features(y), model.features(y), atol=2e-3)
    np.testing.assert_allclose(exported.features(y[0, :1000]), model.features(y[0, :1000]), atol=2e-3)


def test_no_per_input_normalisation() -> None:
    """A frame's features depend on its samples only: a loud neighbour or a cut changes nothing."""
    fe = FrontEnd()
    y = torch.from_numpy(_signal(2.0))
    hop = fe.hop_length
    full = fe(y)
    for k in (3, 50, 101):
        torch.testing.assert_close(fe(y[k * hop :]), full[:, k:], atol=1e-3, rtol=1e-5)
    quiet_alone = fe(y[8000:16000])
    torch.testing.assert_close(quiet_alone, full[:, 50 : 50 + quiet_alone.shape[-1]], atol=1e-3, rtol=1e-5)


def test_shapes_and_batching() -> None:
    fe = FrontEnd(FeatureConfig(kind="logmel", n_mels=64))
    x = torch.randn(3, 2, 16000)
    out = fe(x)
    assert out.shape == (3, 2, 64, 98)
    torch.testing.assert_close(out[1, 0], fe(x[1, 0]), atol=1e-3, rtol=1e-5)
    assert fe(torch.zeros(100)).shape == (64, 0)  # shorter than one window


def test_bad_settings_are_explained() -> None:
    with pytest.raises(ValueError, match="n_mfcc"):
        FrontEnd(FeatureConfig(n_mfcc=80, n_mels=40))
    with pytest.raises(ValueError, match="kind"):
        FrontEnd(FeatureConfig(kind="cqt"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^features.n_fft \(256\) cannot be shorter than the window \(480 samples\)$"):
        FrontEnd(FeatureConfig(n_fft=256))
