"""``kws synth-speech``: audio without command words said on their own, for training negatives and benchmarks.

Two kinds of file, in a Speech Commands-layout folder whose only "words" are ``_speech_`` and ``_sounds_``:

- ``_speech_/<voice>_nohash_<n>.wav``: running speech. Each file is a passage of ``PASSAGE_SENTENCES``
  consecutive sentences of ``SENTENCES_FILE`` (public-domain read English, which holds command words inside its
  sentences: "go up to the city", "turn to the right"), said by one TTS voice of :mod:`pipeline.data.synth` in
  one breath at a drawn speaking rate, pitch and level. Every chosen voice says ``passages_per_voice`` passages.
- ``_sounds_/sounds_nohash_<n>.wav``: ``SOUND_SECONDS`` of procedural sounds at random times and levels:
  clicks, clinks (the damped high partials of dishes and glasses), knocks, and music-like notes and chords.

``validation_list.txt`` and ``testing_list.txt`` follow the voices' split (:attr:`~pipeline.data.synth.Voice.split`),
so the held-out voices' speech can make benchmark streams (``kws make-stream --source OUT --split test``); of the
sound files, every tenth is validation and the next test. Training reads the folder as negatives
(``--data.negatives``): any 1 s window cut from it is ``_unknown_`` (or ``_silence_`` for a model without
``_unknown_``), command words inside sentences included, so that a command is a word said on its own.

Every draw comes from ``(seed, voice, n)``; a re-run skips what is there and completes an interrupted folder, and
refuses one made with other settings (``.kws_speech.json``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import numpy as np

from pipeline.console import console
from pipeline.data.speech_commands import TESTING_LIST, VALIDATION_LIST
from pipeline.data.synth import RENDERER, Say, Voice, check_out, run_jobs, select_voices, speak
from pipeline.data.synth.engines import _rng
from pipeline.data.synth.render import _trim
from pipeline.errors import DataError
from pipeline.files import write_text
from pipeline.runtime.audio import SAMPLE_RATE, save_audio

SENTENCES_FILE = Path(__file__).with_name("sentences.txt")  # see its header
SPEECH, SOUNDS = "_speech_", "_sounds_"  # the corpus's two folders
MARKER = ".kws_speech.json"
PASSAGES_PER_VOICE = 4
PASSAGE_SENTENCES = (3, 8)  # sentences per passage, uniform
RATE_OCTAVES = (-0.35, 0.25)  # speaking rate = the voice's own x 2**uniform(...)
PEAK_DB = (-20.0, -1.0)  # peak level of a file
SOUND_FILES = 40
SOUND_SECONDS = 30.0
SOUND_GAP_SECONDS = (0.1, 1.5)  # between one sound's start and the next
SOUND_PEAK_DB = (-30.0, -3.0)
SOUND_SPLIT_EVERY = 10  # of the sound files, number n % 10 == 1 is validation, == 2 is test


def sentences() -> list[str]:
    """The sentences of ``SENTENCES_FILE``, in order."""
    return [line for line in SENTENCES_FILE.read_text().splitlines() if line and not line.startswith("#")]


def passage(voice: Voice, n: int, seed: int) -> Say:
    """What ``voice`` says in its passage ``n``: consecutive sentences from a drawn place, rate and pitch."""
    rng, text = _rng(seed, "passage", voice.id, n), sentences()
    count = int(rng.integers(PASSAGE_SENTENCES[0], PASSAGE_SENTENCES[1] + 1))
    start = int(rng.integers(0, len(text) - count))
    low, high = RATE_OCTAVES
    return Say(" ".join(text[start : start + count]), rate=2 ** rng.uniform(low, high), pitch=rng.uniform(-1, 1),
               noise=rng.uniform(), noise_w=rng.uniform())  # fmt: skip


def speech_name(voice: Voice, n: int) -> str:
    """``_speech_/<voice id>_nohash_<n>.wav``, relative to the folder."""
    return f"{SPEECH}/{voice.id}_nohash_{n}.wav"


def render_passages(out: Path, voice: Voice, count: int, seed: int) -> int:
    """Write the missing passages of ``voice``; returns how many were written."""
    todo = [n for n in range(count) if not (out / speech_name(voice, n)).exists()]
    for n, audio in zip(todo, speak(voice, [passage(voice, n, seed) for n in todo])):
        speech = _trim(audio)
        if not speech.size:
            raise DataError(f"{voice.id} rendered its passage {n} as silence")
        peak = 10 ** (_rng(seed, "level", voice.id, n).uniform(*PEAK_DB) / 20)
        save_audio(out / speech_name(voice, n), (speech * (peak / np.abs(speech).max())).astype(np.float32))
    return len(todo)


def _partials(rng: np.random.Generator, freqs: np.ndarray, decay_s: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phases = rng.uniform(0, 2 * np.pi, len(freqs))
    amps = rng.uniform(0.3, 1.0, len(freqs))
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0) * np.exp(-t / decay_s)


def sound(rng: np.random.Generator) -> np.ndarray:
    """One procedural sound, peak 1: a click, a clink, a knock, a note or a chord."""
    kind = rng.choice(["click", "clink", "knock", "note", "chord"])
    if kind == "click":
        n = int(rng.uniform(0.001, 0.004) * SAMPLE_RATE)
        x = rng.normal(size=n) * np.exp(-np.arange(n) / (n / 4))
        x = np.diff(x, prepend=0.0)  # bright
    elif kind == "clink":
        x = _partials(rng, rng.uniform(1500, 7500, rng.integers(2, 6)), rng.uniform(0.02, 0.25), 0.6)
    elif kind == "knock":
        body = _partials(rng, rng.uniform(70, 400, rng.integers(1, 4)), rng.uniform(0.02, 0.1), 0.3)
        burst = rng.normal(size=len(body)) * np.exp(-np.arange(len(body)) / (0.004 * SAMPLE_RATE))
        x = body + 0.5 * burst
    else:
        f0s = rng.uniform(110, 880) * (2 ** (np.array([0, 4, 7, 12])[: rng.integers(2, 5)] / 12) if kind == "chord"
                                       else np.ones(1))  # fmt: skip
        harmonics = np.concatenate([f * np.arange(1, rng.integers(3, 9)) for f in f0s])
        seconds = rng.uniform(0.1, 0.9)
        x = _partials(rng, harmonics[harmonics < 7800], rng.uniform(0.1, 1.0), seconds)
        attack = int(0.01 * SAMPLE_RATE)
        x[:attack] *= np.linspace(0, 1, attack)
        x[-attack:] *= np.linspace(1, 0, attack)
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def render_sounds(path: Path, n: int, seed: int) -> int:
    """Write sound file ``n``: ``SOUND_SECONDS`` of sounds at random times and levels over faint noise."""
    rng = _rng(seed, "sounds", n)
    length = int(SOUND_SECONDS * SAMPLE_RATE)
    audio = rng.normal(0, 10 ** (-70 / 20), length)
    t = 0
    while True:
        t += int(rng.uniform(*SOUND_GAP_SECONDS) * SAMPLE_RATE)
        x = sound(rng) * 10 ** (rng.uniform(*SOUND_PEAK_DB) / 20)
        if t + len(x) > length:
            break
        audio[t : t + len(x)] += x
    save_audio(path, np.clip(audio, -1, 1).astype(np.float32))
    return 1


def synthesize_speech(
    out: str | os.PathLike, passages_per_voice: int = PASSAGES_PER_VOICE, voices: list[str] | None = None,
    sound_files: int = SOUND_FILES, seed: int = 0, jobs: int | None = None,
) -> Path:  # fmt: skip
    """Render the folder (see the module docstring) into ``out`` and return it.

    Raises:
        DataError: no TTS engine, bad voices or counts, or an output folder that is not this corpus.
    """
    out, chosen = Path(out), select_voices(voices)
    if passages_per_voice < 0 or sound_files < 0 or (jobs is not None and jobs < 1):
        raise DataError("--passages-per-voice and --sound-files cannot be negative, and --jobs must be at least 1")
    settings = {"voices": [v.id for v in chosen], "passages_per_voice": passages_per_voice,
                "sound_files": sound_files, "seed": seed, "renderer": RENDERER}  # fmt: skip
    check_out(out, settings, MARKER)
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob("**/.*.tmp"):  # left by a killed run
        stray.unlink()
    write_text(out / MARKER, json.dumps(settings, indent=1) + "\n")
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    todo = []
    for voice in chosen:
        names = [speech_name(voice, n) for n in range(passages_per_voice)]
        lists.get(voice.split, []).extend(names)
        if missing := sum(not (out / name).exists() for name in names):
            todo.append((missing, functools.partial(render_passages, out, voice, passages_per_voice, seed)))
    for n in range(sound_files):
        name = f"{SOUNDS}/sounds_nohash_{n}.wav"
        split = {1: "validation", 2: "test"}.get(n % SOUND_SPLIT_EVERY)
        if split:
            lists[split].append(name)
        if not (out / name).exists():
            todo.append((1, functools.partial(render_sounds, out / name, n, seed)))
    begin = time.perf_counter()
    written = run_jobs(todo, jobs, "synth-speech")
    for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST)):
        write_text(out / name, "".join(rel + "\n" for rel in sorted(lists[split])))
    console.print(f"{out}: {passages_per_voice * len(chosen)} passages ({len(chosen)} voices x "
                  f"{passages_per_voice}) and {sound_files} sound files, {written} written in "
                  f"{time.perf_counter() - begin:.0f} s", highlight=False)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """``kws synth-speech``: parse ``argv`` and render the folder; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kws synth-speech",
        description="Render running speech (read sentences, every TTS voice) and procedural sounds: audio without "
        "command words said on their own, for --data.negatives and for benchmark streams.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder: new, empty, or one to complete")
    parser.add_argument("--passages-per-voice", type=int, default=PASSAGES_PER_VOICE,
                        help=f"passages of {PASSAGE_SENTENCES[0]}-{PASSAGE_SENTENCES[1]} sentences each voice says "
                        f"(default: {PASSAGES_PER_VOICE})")  # fmt: skip
    parser.add_argument("--sound-files", type=int, default=SOUND_FILES,
                        help=f"files of {SOUND_SECONDS:g} s of clicks, clinks, knocks and notes (default: "
                        f"{SOUND_FILES})")  # fmt: skip
    parser.add_argument("--voices", default="default", help="comma-separated globs over voice ids (kws synth "
                        "--list-voices), 'all', or 'default' (the default: kws synth's default set)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: the CPU count)")
    args = parser.parse_args(argv)
    synthesize_speech(args.out, args.passages_per_voice, args.voices.split(","), args.sound_files, args.seed,
                      args.jobs)  # fmt: skip
    return 0
