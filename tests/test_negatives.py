"""Negatives: kws synth-speech's running speech and sounds, data.negatives in training, and the mining loop."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
from conftest import TRAIN_EPOCHS, WORDS, one_thread, tone_word

from pipeline.cli import main as kws
from pipeline.data.speech import SOUNDS, SPEECH, sentences, sound
from pipeline.data.speech_commands import TESTING_LIST, UNKNOWN, VALIDATION_LIST
from pipeline.data.synth import select_voices
from pipeline.mining import MARKER, MINED
from pipeline.runtime.audio import SAMPLE_RATE, read_audio, save_audio
from pipeline.runtime.streaming import offline_scores
from pipeline.train.datamodule import NEGATIVE_STORE, SpeechCommandsDataModule
from pipeline.train.model import load_model
from pipeline.train.module import KWSModule

VOICES = "espeak-en-029,espeak-en-gb-scotland,espeak-en-us"  # a validation, a test and a training voice


def test_synth_speech_renders_running_speech_and_sounds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "speech"
    args = ["synth-speech", "--out", str(out), "--voices", VOICES, "--passages-per-voice", "2", "--sound-files", "3"]
    assert kws(args) == 0
    voices = {v.id: v for v in select_voices(VOICES.split(","))}
    files = sorted((out / SPEECH).glob("*.wav"))
    assert len(files) == 2 * len(voices) and len(list((out / SOUNDS).glob("*.wav"))) == 3
    for path in files:
        assert sf.info(path).duration > 4.0  # several sentences, not a word
    lists = {name: set((out / name).read_text().split()) for name in (VALIDATION_LIST, TESTING_LIST)}
    for path in files:
        split = voices[path.name.split("_nohash_")[0]].split
        rel = f"{SPEECH}/{path.name}"
        assert (rel in lists[VALIDATION_LIST], rel in lists[TESTING_LIST]) == (split == "validation", split == "test")
    digest = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in files}
    capsys.readouterr()
    assert kws(args) == 0 and "0 written" in capsys.readouterr().out  # complete: nothing rendered again
    assert {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in files} == digest
    assert kws([*args[:-1], "4"]) == 2  # other settings: refused in one sentence
    assert "different" in capsys.readouterr().err
    assert len(sentences()) >= 4000


def test_sounds_are_short_and_loud() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = sound(rng)
        assert 10 < len(x) < SAMPLE_RATE and abs(float(np.abs(x).max()) - 1.0) < 1e-3


def _negatives_folder(root: Path) -> Path:
    """Three files of constant levels 0.1 (validation), 0.2 (train) and 0.3 (test), of 2-5 s."""
    for name, level, seconds in (("a", 0.1, 2.0), ("b", 0.2, 5.0), ("c", 0.3, 3.0)):
        save_audio(root / SPEECH / f"{name}_nohash_0.wav", np.full(int(seconds * SAMPLE_RATE), level, np.float32))
    (root / VALIDATION_LIST).write_text(f"{SPEECH}/a_nohash_0.wav\n")
    (root / TESTING_LIST).write_text(f"{SPEECH}/c_nohash_0.wav\n")
    return root


def test_negative_windows_come_from_their_own_split(tone_corpus: Path, tmp_path: Path) -> None:
    negatives = _negatives_folder(tmp_path / "negatives")
    data = SpeechCommandsDataModule(root=str(tone_corpus), task=WORDS, negatives=str(negatives), negative_share=0.5,
                                    cache_dir=str(tmp_path / "cache"))  # fmt: skip
    data.setup()
    unknown = data.labels.index(UNKNOWN)
    for split, level in (("validation", 0.1), ("train", 0.2), ("test", 0.3)):
        dataset = data.datasets[split]
        rows = [i for i, (store, _) in enumerate(dataset.items) if store == NEGATIVE_STORE]
        words = sum(1 for (store, _), y in zip(dataset.items, dataset.labels) if store >= 0 and data.labels[y] in WORDS)
        assert len(rows) == int(np.ceil(words * 0.5)) > 0
        for i in rows:
            clip, label = dataset[i]
            assert label == unknown and len(clip) == SAMPLE_RATE
            assert np.allclose(clip.numpy()[clip.numpy() != 0], level, atol=1e-4)  # only this split's file
        assert [dataset[i][0].sum() for i in rows[:3]] == [dataset[i][0].sum() for i in rows[:3]]  # fixed windows


def _near_words(root: Path, speakers: int = 3) -> Path:
    """Negatives the tone model takes for its words: its words' tones 10 % higher, in 8 s files, all train."""
    rng = np.random.default_rng(7)
    for s in range(speakers):
        parts = []
        for word in ("yes", "up", "no", "down"):
            clip = tone_word(word, rng)
            shifted = np.interp(np.arange(0, len(clip), 1.1), np.arange(len(clip)), clip).astype(np.float32)
            parts += [shifted, rng.normal(0, 0.003, SAMPLE_RATE).astype(np.float32)]
        save_audio(root / SPEECH / f"near{s}_nohash_0.wav", np.concatenate(parts))
    (root / VALIDATION_LIST).write_text("")
    (root / TESTING_LIST).write_text("")
    return root


def _fit(tone_corpus: Path, negatives: Path | None, out: Path) -> Path:
    L.seed_everything(0, verbose=False)
    data = SpeechCommandsDataModule(root=str(tone_corpus), task=WORDS, batch_size=16, cache_dir=None,
                                    negatives=str(negatives) if negatives else None, negative_share=1.0)  # fmt: skip
    module = KWSModule(data.labels, optimizer={"lr": 5e-3, "warmup_epochs": 1.0})
    trainer = L.Trainer(max_epochs=TRAIN_EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    with one_thread():
        trainer.fit(module, data)
    trainer.save_checkpoint(out)
    return out


def _word_scores(ckpt: Path, clips: list[Path]) -> np.ndarray:
    model = load_model(ckpt)
    words = [i for i, label in enumerate(model.labels) if label in WORDS]
    return np.array([offline_scores(model, read_audio(c))[0, words].max() for c in clips])


def test_mining_keeps_what_fires_and_a_model_trained_on_it_fires_less(
    trained: Path, tone_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    negatives, mined = _near_words(tmp_path / "near"), tmp_path / "mined"
    floor = 0.3
    assert kws(["mine", "--ckpt", str(trained), "--negatives", str(negatives), "--out", str(mined), "--floor",
                str(floor)]) == 0  # fmt: skip
    clips = sorted((mined / MINED).glob("*_nohash_r1-*.wav"))
    assert clips, capsys.readouterr().out
    before = _word_scores(trained, clips)
    assert (before > floor).all()  # each kept window is one the model fires on
    assert all(sf.info(c).frames == SAMPLE_RATE for c in clips)
    assert {c.name.split("_nohash_")[0] for c in clips} <= {"near0", "near1", "near2"}  # the source's speaker
    state = json.loads((mined / MARKER).read_text())
    assert len(state["rounds"]["1"]["files"]) == 3
    # a rerun of the round resumes: nothing is mined or written again
    stamps = {c: c.stat().st_mtime_ns for c in clips}
    capsys.readouterr()
    assert kws(["mine", "--ckpt", str(trained), "--negatives", str(negatives), "--out", str(mined), "--floor",
                str(floor)]) == 0  # fmt: skip
    assert {c: c.stat().st_mtime_ns for c in clips} == stamps
    assert (
        kws(["mine", "--ckpt", str(trained), "--negatives", str(negatives), "--out", str(mined), "--floor", "0.5"]) == 2
    )  # the same round with another floor: refused
    # round 2: the same recipe with the mined windows as negatives fires less on them, and round 2 keeps fewer
    second = _fit(tone_corpus, mined, tmp_path / "round2.ckpt")
    after = _word_scores(second, clips)
    assert after.mean() < before.mean() - 0.2, (before, after)
    assert kws(["mine", "--ckpt", str(second), "--negatives", str(negatives), "--out", str(mined), "--round", "2",
                "--floor", str(floor)]) == 0  # fmt: skip
    assert len(list((mined / MINED).glob("*_nohash_r2-*.wav"))) < len(clips)
