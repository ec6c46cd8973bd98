"""Test corpora in the Speech Commands layouts, generated from tones and noise (no downloads)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from pipeline.data.speech_commands import NOISE_DIR, SILENCE, TESTING_LIST, UNKNOWN, VALIDATION_LIST
from pipeline.runtime.audio import SAMPLE_RATE, save_audio
from pipeline.train.datamodule import SpeechCommandsDataModule
from pipeline.train.module import KWSModule

WORDS = ["yes", "no", "up", "down"]  # the vocabulary of the `trained` model
TRAIN_EPOCHS = 12
# detector settings for the tone model: its words are short tones, so a 200 ms stride (the defaults are tuned
# for speech)
TONE_DETECTOR = {"stride_ms": 200.0, "threshold": 0.5, "smooth_ms": 200.0}


def tone_word(word: str, rng: np.random.Generator, seconds: float = 1.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A one-second clip whose spectrum identifies ``word``: two word-specific tones, speaker jitter, noise."""
    k = int(hashlib.md5(word.encode()).hexdigest(), 16)
    f1, f2 = 250 + 60 * (k % 23), 1100 + 90 * ((k // 23) % 29)
    scale = rng.uniform(0.95, 1.05)
    n = int(seconds * rate)
    length = int(rng.uniform(0.4, 0.6) * rate)
    start = int(rng.integers(0, n - length))
    t = np.arange(length) / rate
    env = np.sin(np.pi * np.arange(length) / length) ** 2
    sig = 0.3 * np.sin(2 * np.pi * f1 * scale * t) + 0.2 * np.sin(2 * np.pi * f2 * scale * t)
    clip = rng.normal(0, 0.003, n)
    clip[start : start + length] += env * sig * rng.uniform(0.5, 1.0)
    return clip.astype(np.float32)


def make_corpus(
    root: Path,
    words: list[str],
    speakers: int = 10,
    clips_per_speaker: int = 2,
    lists: bool = True,
    noise: bool = True,
    seed: int = 0,
) -> Path:
    """Write a Google-layout corpus; with ``lists``, speakers 0 and 1 are validation and 2 is test."""
    rng = np.random.default_rng(seed)
    validation, testing = [], []
    for word in words:
        for s in range(speakers):
            speaker = f"spk{s:03d}"
            for n in range(clips_per_speaker):
                rel = f"{word}/{speaker}_nohash_{n}.wav"
                save_audio(root / rel, tone_word(word, rng))
                (validation if s in (0, 1) else testing if s == 2 else []).append(rel)
    if lists:
        (root / VALIDATION_LIST).write_text("\n".join(validation) + "\n")
        (root / TESTING_LIST).write_text("\n".join(testing) + "\n")
    if noise:
        save_audio(root / NOISE_DIR / "white.wav", rng.normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32))
    return root


def make_archive(root: Path, words: list[str], others: list[str], speakers: int = 4, seed: int = 1) -> Path:
    """Write the official test-archive layout: word folders plus ``_unknown_`` and ``_silence_``."""
    rng = np.random.default_rng(seed)
    for s in range(speakers):
        for word in words:
            save_audio(root / word / f"arch{s:03d}_nohash_0.wav", tone_word(word, rng))
        for word in others:
            save_audio(root / UNKNOWN / f"{word}_arch{s:03d}_nohash_0.wav", tone_word(word, rng))
        save_audio(root / SILENCE / f"{s}.wav", rng.normal(0, 0.01, SAMPLE_RATE).astype(np.float32))
    return root


TWO_WORDS = ["yes", "no"]


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four target words of the 12 task plus two other words, 10 speakers, list files and noise."""
    root = tmp_path_factory.mktemp("corpus") / "speech_commands"
    return make_corpus(root, ["yes", "no", "up", "down", "cat", "dog"], speakers=10, clips_per_speaker=3)


def word_sequence(words: list[str], seed: int, gap: float = 0.6) -> np.ndarray:
    """Tone words (1 s clips) separated by ``gap`` seconds of faint noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for word in words:
        parts += [tone_word(word, rng), rng.normal(0, 0.003, int(gap * SAMPLE_RATE)).astype(np.float32)]
    return np.concatenate(parts)


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: faster for these tiny models, and kind to a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BC-ResNet trained for a few epochs on the tone corpus; the path of its Lightning checkpoint."""
    L.seed_everything(0, verbose=False)
    data = SpeechCommandsDataModule(root=str(tone_corpus), task=WORDS, batch_size=16, cache_dir=None)
    module = KWSModule(data.labels, optimizer={"lr": 5e-3, "warmup_epochs": 1.0})
    trainer = L.Trainer(max_epochs=TRAIN_EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    with one_thread():
        trainer.fit(module, data)
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path
