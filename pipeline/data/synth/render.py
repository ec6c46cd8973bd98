"""Words to clips: the word presets, the per-clip draws (rate, pitch, loudness, onset, style) from ``(seed, word,
voice, n)`` alone, trimming and placing the speech in one second (:func:`render_voice`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.speech_commands import WORDS_V2
from pipeline.data.synth.engines import DEFAULT_STYLES, Say, _rng, speak
from pipeline.data.synth.voices import Voice
from pipeline.errors import DataError
from pipeline.runtime.audio import CLIP_SAMPLES, SAMPLE_RATE, save_audio

OTHER_WORDS_FILE = (
    Path(__file__).parents[1].joinpath("other_words.txt")
)  # the other-words preset: see the file's header
NEAR_WORDS_FILE = Path(__file__).parents[1] / "near_words.txt"  # the near-words preset: see the file's header


def _word_file(path: Path) -> tuple[str, ...]:
    return tuple(w for w in path.read_text().splitlines() if w and not w.startswith("#"))


PRESETS = {
    "gsc-v2-12": WORDS_V2,  # 12 classes need the other 25 words as _unknown_
    "gsc-v2-35": WORDS_V2,
    "other-words": _word_file(OTHER_WORDS_FILE),
    "near-words": _word_file(NEAR_WORDS_FILE),
}
WORD_RE = re.compile(r"[a-z][a-z' -]*")  # what every engine speaks as a word
RATE_OCTAVES = (-0.75, 0.25)  # speaking rate = default x 2**uniform(...): slower, like words read one by one
DEFAULT_PITCH_SPREAD = 1.0  # each clip's pitch is drawn in [-spread, spread] (see Say)
PEAK_DB = (-20.0, -1.0)  # peak level of a clip
TRIM_DB = -40.0  # silence: quieter than this below the peak
EDGE = SAMPLE_RATE // 100  # 10 ms kept around the trimmed speech, and the fade of a crop
MAX_SPEECH_SECONDS = 0.95
MAX_RENDERS = 3


def resolve_words(words: str | Sequence[str]) -> tuple[str, ...]:
    """A comma list (or a list) of words and preset names, as distinct lower-case words.

    Raises:
        DataError: the list is empty, or a word has characters other than letters, ``'``, ``-``, space.
    """
    if isinstance(words, str):
        words = words.split(",")
    expanded = [w for item in words for w in PRESETS.get(item.strip(), (item,))]
    resolved = tuple(dict.fromkeys(w.strip().lower() for w in expanded if w.strip()))
    if not resolved:
        raise DataError(f"the word list is empty: give comma-separated words or a preset ({', '.join(PRESETS)})")
    for word in resolved:
        if not WORD_RE.fullmatch(word):
            raise DataError(
                f"cannot speak {word!r}: a word must start with a letter and hold only letters, "
                "apostrophes, hyphens and spaces"
            )
    return resolved


def _trim(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > np.abs(audio).max(initial=0) * 10 ** (TRIM_DB / 20))
    return audio[max(loud[0] - EDGE, 0) : loud[-1] + EDGE + 1] if loud.size else audio[:0]


def clip_name(word: str, voice: Voice, n: int) -> str:
    """``<word>/<voice id>_nohash_<n>.wav``, relative to the corpus root."""
    return f"{word}/{voice.id}_nohash_{n}.wav"


def render_voice(
    out: Path,
    voice: Voice,
    words: Sequence[str],
    clips_per_voice: int,
    seed: int,
    styles: Sequence[str] = DEFAULT_STYLES,
    pitch_spread: float = DEFAULT_PITCH_SPREAD,
) -> int:
    """Write the missing clips of ``voice`` into ``out``; returns how many were written.

    Clip ``n`` of a word draws its rate, pitch (in ``[-pitch_spread, pitch_spread]``), level, onset, noise
    scales and style (one of ``styles``, keys of ``STYLES``) from ``(seed, word, voice, n)``.
    All the clips of the voice are rendered together even when some exist, so a file never depends on which
    were missing.
    """
    draws = {(w, n): _rng(seed, w, voice.id, n).uniform(size=7) for w in words for n in range(clips_per_voice)}
    low, high = RATE_OCTAVES
    items = [
        Say(
            w,
            rate=2 ** (low + d[0] * (high - low)),
            pitch=pitch_spread * (2 * d[1] - 1),
            noise=d[4],
            noise_w=d[5],
            style=styles[int(d[6] * len(styles))],
        )
        for (w, _), d in draws.items()
    ]
    longest, written = int(MAX_SPEECH_SECONDS * SAMPLE_RATE), 0
    for ((word, n), draw), say, audio in zip(draws.items(), items, speak(voice, items)):
        path = out / clip_name(word, voice, n)
        if path.exists():
            continue
        speech = _trim(audio)
        for _ in range(MAX_RENDERS - 1):  # too long: say it faster
            if len(speech) <= longest:
                break
            say = say._replace(rate=say.rate * 1.05 * len(speech) / longest)
            speech = _trim(speak(voice, [say])[0])
        if len(speech) > longest:
            speech = speech[:longest] * np.minimum(1, np.arange(longest, 0, -1) / EDGE)
        if not speech.size:
            raise DataError(f"{voice.id} rendered {word!r} as silence")
        clip = np.zeros(CLIP_SAMPLES, np.float32)
        offset = int(draw[3] * (CLIP_SAMPLES - len(speech)))
        peak = 10 ** ((PEAK_DB[0] + draw[2] * (PEAK_DB[1] - PEAK_DB[0])) / 20)
        clip[offset : offset + len(speech)] = speech * (peak / np.abs(speech).max())
        save_audio(path, clip)
        written += 1
    return written
