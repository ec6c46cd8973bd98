"""The bundled model: it loads, knows the 12 labels, recognises words a TTS voice it never trained on says, and
``kws transcribe`` / ``kws models`` / the microphone demo use it when no ``--ckpt`` is given."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import one_thread
from pipeline import bundled
from pipeline.audio import CLIP_SAMPLES, SAMPLE_RATE, save_audio
from pipeline.cli import main
from pipeline.data import synth
from pipeline.data.speech_commands import TWELVE_WORDS, make_task
from pipeline.errors import KWSError
from pipeline.model import load_model
from pipeline.onnx_model import OnnxModel
from pipeline.arguments import detector_from_args
from pipeline.transcribe import build_parser

REPO = Path(__file__).resolve().parents[1]
# flite's voices are the TTS corpus's test family: the bundled model never trained on them
VOICES = [synth.Voice(synth.FLITE, name) for name in ("awb", "kal", "kal16", "rms", "slt")]
MIN_RECOGNISED = 0.8  # of the ten command words said by each voice, one clip each
MIN_FOUND = 0.35  # of those words in a stream, at the bundled model's own operating point (the card: 42 %)


def _centred(audio: np.ndarray) -> np.ndarray:
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    speech = audio[:CLIP_SAMPLES]
    start = (CLIP_SAMPLES - len(speech)) // 2
    clip[start : start + len(speech)] = speech * (0.3 / np.abs(speech).max())
    return clip


@pytest.fixture(scope="module")
def spoken() -> list[tuple[str, np.ndarray]]:
    """The ten command words said by each held-out flite voice, each centred in a 1 s clip."""
    if shutil.which(synth.FLITE) is None:
        pytest.skip(f"flite is not installed ({synth.INSTALL})")
    return [(w, _centred(a)) for voice in VOICES
            for w, a in zip(TWELVE_WORDS, synth.speak(voice, [(w, 1.0, 0.0) for w in TWELVE_WORDS]))]  # fmt: skip


def test_the_default_bundled_model_is_small_and_knows_the_12_labels(spoken: list[tuple[str, np.ndarray]]) -> None:
    cards = bundled.bundled_models()
    assert cards and cards[0].default and sum(c.default for c in cards) == 1
    card = cards[0]
    assert card.path.stat().st_size <= 1 << 20
    assert 0.5 < card.accuracy <= 1 and card.folds >= 2 and card.params <= 100_000
    model = load_model(card.path, runtime="torch")
    assert model.labels == card.labels == make_task("12").labels
    assert sum(p.numel() for p in model.encoder.parameters()) == card.params
    exported = OnnxModel(card.export_path)  # what the torch-free runtime runs: the same model
    assert exported.labels == card.labels and exported.sample_rate == model.sample_rate
    windows = model.features(np.stack([clip for _, clip in spoken[:4]]))
    np.testing.assert_allclose(exported.logits(windows), model.logits(windows), atol=1e-4)


def test_the_bundled_model_recognises_words_of_voices_it_never_heard(spoken: list[tuple[str, np.ndarray]]) -> None:
    _, card = bundled.resolve_model(None)
    model = OnnxModel(card.export_path)  # the model kws transcribe runs by default
    logits = model.logits(model.features(np.stack([clip for _, clip in spoken])))
    predicted = [model.labels[i] for i in logits.argmax(1).tolist()]
    assert sum(p == w for p, (w, _) in zip(predicted, spoken)) >= MIN_RECOGNISED * len(spoken), predicted


def test_transcribe_and_the_mic_demo_use_the_bundled_model_without_ckpt(
    spoken: list[tuple[str, np.ndarray]], tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    gap = np.zeros(SAMPLE_RATE, np.float32)
    said = [w for w, _ in spoken]
    stream = tmp_path / "said.wav"
    save_audio(stream, np.concatenate([gap] + [x for _, clip in spoken for x in (clip, gap)]))
    with one_thread():
        assert main(["transcribe", str(stream), "--format", "csv"]) == 0
    out = capsys.readouterr()
    assert "using the bundled model" in out.err
    found = [line.split(",")[1] for line in out.out.splitlines()[1:]]
    rest = iter(said)
    in_order = sum(any(w == s for s in rest) for w in found)  # found words that follow the spoken order
    # at its own (conservative) operating point the engine finds about 40 % of real speakers' words (the card's)
    assert in_order >= MIN_FOUND * len(said) and len(found) - in_order <= 2, found
    assert main(["live", "--input-file", str(stream)]) == 0
    out = capsys.readouterr()
    assert "using the bundled model" in out.err and "end of input" in out.out


def test_ckpt_takes_a_bundled_name_and_kws_models_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    card = bundled.bundled_models()[0]
    parser = build_parser()
    assert OnnxModel(card.export_path).decision == card.decision and card.decision["threshold"] == card.threshold
    assert detector_from_args(parser.parse_args(["x.wav"])).settings.to_dict() == card.decision  # its own point
    assert detector_from_args(parser.parse_args(["x.wav", "--threshold", "0.55"])).settings.threshold == 0.55
    assert bundled.resolve_model(card.name) == (str(card.path), card)
    assert bundled.resolve_model("some/file.ckpt") == ("some/file.ckpt", None)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert card.name in out and f"{card.accuracy:.1%}" in out and "reproduce:" in out


def test_without_a_bundled_model_the_error_is_one_sentence(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundled, "CARDS_FILE", tmp_path / "models.json")  # an installation without weights
    with pytest.raises(KWSError, match="no model is bundled"):
        bundled.resolve_model(None)
