"""The corpus's ``_background_noise_``: coloured noise, a babble of training voices saying pseudo-words, and the
files of ``--noise-dir`` converted to 16 kHz."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.synth.engines import _rng, speak
from pipeline.data.synth.voices import Voice
from pipeline.runtime.audio import SAMPLE_RATE, read_audio, save_audio

NOISE_SECONDS = 60
NOISE_RMS = 0.3  # like the white and pink noise of Speech Commands
COLORS = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}  # power spectrum ~ 1 / f**exponent
BABBLE, BABBLE_TALKERS, BABBLE_RMS = "babble", 6, 0.1
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ee", "oo")]


def _colored(rng: np.random.Generator, exponent: float, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.arange(1, len(spectrum)) ** (exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def render_noise(path: Path, kind: str, voices: list[Voice], avoid: Sequence[str], seed: int) -> int:
    """Write ``NOISE_SECONDS`` of coloured noise, or a babble of talkers saying pseudo-words not in ``avoid``."""
    rng, n = _rng(seed, kind), NOISE_SECONDS * SAMPLE_RATE
    if kind in COLORS:
        noise, rms = _colored(rng, COLORS[kind], n), NOISE_RMS
    else:
        noise, rms = np.zeros(n), BABBLE_RMS
        for i in rng.choice(len(voices), min(BABBLE_TALKERS, len(voices)), replace=False):
            words = ("".join(rng.choice(SYLLABLES, rng.integers(2, 4))) for _ in range(3 * NOISE_SECONDS))
            text = " ".join(w for w in words if w not in avoid)
            speech = speak(voices[i], [(text, 2 ** rng.uniform(-0.3, 0.3), 0.0)])[0]
            talker = np.roll(np.resize(speech, n), rng.integers(n))
            noise += talker / (np.sqrt(np.mean(talker**2)) + 1e-9) * rng.uniform(0.5, 1.0)
    save_audio(path, (noise * rms / np.sqrt(np.mean(noise**2))).astype(np.float32))
    return 1


def _convert(source: Path, path: Path) -> int:
    save_audio(path, read_audio(source))
    return 1
