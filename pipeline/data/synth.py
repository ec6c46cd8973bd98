"""``kws synth``: render words with many TTS voices into a corpus in the Speech Commands layout.

Every word is spoken by every chosen voice, ``clips_per_voice`` times, into
``<out>/<word>/<voice>_nohash_<n>.wav`` (16 kHz mono 16-bit PCM, exactly one second), beside
``validation_list.txt``, ``testing_list.txt`` and ``_background_noise_/`` (white, pink and brown noise
and a babble of training voices saying pseudo-words, or the converted files of ``--noise-dir``).
``.kws_synth.json`` records the settings: a re-run skips the clips already there, and refuses to mix a
corpus made with other settings.

Voices: every English espeak-ng accent (``espeak-ng --voices=en``, mbrola voices left out) alone and with
each espeak-ng variant (``espeak-ng --voices=variant``: m1-m8, f1-f5, klatt, croak, whisper, ...), plus
the built-in flite voices (``flite -lv``). A voice's id, e.g. ``espeak-en-gb-scotland-f3`` or
``flite-slt``, is the speaker id of its files. The default set takes every accent alone, every flite
voice, and each variant once, dealt in turn to the accents: every timbre is heard in one accent, and the
35-word default corpus (about 4000 clips) renders in about half a minute on two cores. ``--voices all``
takes every accent x variant. espeak-ng says all the words of a voice in one call (its start-up costs
more than a word), cut at the pauses.

Each clip draws its speaking rate, pitch, loudness and onset from ``(seed, word, voice, n)`` only, so a
corpus is the same whatever the number of jobs or the interruptions. The speech is trimmed of silence,
re-rendered faster if it is longer than ``MAX_SPEECH_SECONDS`` (cropped if still too long), and placed
at a random offset in the second.

Split rule (``TEST_FAMILIES``, ``VALIDATION_FAMILIES``): a voice's split follows its family (``flite``, or
``espeak-<accent>``), so no voice is in two splits and the held-out voices differ in kind from the
training ones: the test split is every flite voice (another engine) and the Scottish espeak accent; the
validation split is the Caribbean espeak accent; the other accents are for training.

Presets: ``gsc-v2-12`` and ``gsc-v2-35`` both render the 35 words of Speech Commands v0.02, so that the
12-class task finds the other 25 words for its ``_unknown_`` class.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.audio import CLIP_SAMPLES, SAMPLE_RATE, load_audio, resample, save_audio
from pipeline.console import console, warn
from pipeline.data.speech_commands import NOISE_DIR, TESTING_LIST, VALIDATION_LIST, WORDS_V2, audio_files
from pipeline.errors import DataError
from pipeline.files import write_text

ESPEAK, FLITE = "espeak-ng", "flite"
INSTALL = "apt-get install -y espeak-ng flite"
OTHER_WORDS_FILE = Path(__file__).with_name("other_words.txt")  # the other-words preset: see the file's header
PRESETS = {
    "gsc-v2-12": WORDS_V2,  # 12 classes need the other 25 words as _unknown_
    "gsc-v2-35": WORDS_V2,
    "other-words": tuple(w for w in OTHER_WORDS_FILE.read_text().splitlines() if w and not w.startswith("#")),
}
WORD_RE = re.compile(r"[a-z][a-z' -]*")  # what both engines speak as a word
MARKER = ".kws_synth.json"

TEST_FAMILIES = ("flite", "espeak-en-gb-scotland")
VALIDATION_FAMILIES = ("espeak-en-029",)

DEFAULT_CLIPS_PER_VOICE = 1
FLITE_SKIP = ("awb_time",)  # a limited-domain voice that only speaks clock times
FLITE_F0 = {"slt": 170.0}  # mean pitch (Hz) of the flite voices; the others are near FLITE_DEFAULT_F0
FLITE_DEFAULT_F0 = 100.0
RATE_OCTAVES = (-0.75, 0.25)  # speaking rate = default x 2**uniform(...): slower, like words read one by one
PITCH_SPAN = 1.3  # pitch in [-1, 1]: flite mean pitch x 1.3**pitch, espeak-ng SSML pitch +-50 %
PAUSE_MS = 600  # between the words of one espeak-ng call
SILENT, MIN_PAUSE = 1e-3, int(0.3 * SAMPLE_RATE)  # the audio is cut at the longest quieter stretches
PEAK_DB = (-20.0, -1.0)  # peak level of a clip
TRIM_DB = -40.0  # silence: quieter than this below the peak
EDGE = SAMPLE_RATE // 100  # 10 ms kept around the trimmed speech, and the fade of a crop
MAX_SPEECH_SECONDS = 0.95
MAX_RENDERS = 3

NOISE_SECONDS = 60
NOISE_RMS = 0.3  # like the white and pink noise of Speech Commands
COLORS = {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}  # power spectrum ~ 1 / f**exponent
BABBLE, BABBLE_TALKERS, BABBLE_RMS = "babble", 6, 0.1
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ee", "oo")]


@dataclass(frozen=True)
class Voice:
    """A TTS voice: ``engine`` is ``espeak-ng`` or ``flite``; ``name`` is what the engine is given."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        """Speaker id: ``espeak-<accent>[-<variant>]`` or ``flite-<voice>``, only ``[a-z0-9-]``."""
        engine = "espeak" if self.engine == ESPEAK else self.engine
        return re.sub(r"[^a-z0-9]+", "-", f"{engine}-{self.name}".lower()).strip("-")

    @property
    def family(self) -> str:
        """``flite``, or ``espeak-<accent>``: the unit of the split rule."""
        return "flite" if self.engine == FLITE else "espeak-" + self.name.split("+")[0]

    @property
    def split(self) -> str:
        """``test``, ``validation`` or ``train``, by family."""
        if self.family in TEST_FAMILIES:
            return "test"
        return "validation" if self.family in VALIDATION_FAMILIES else "train"


def _run(cmd: list[str]) -> bytes:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode or not proc.stdout:
        reason = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise DataError(f"`{' '.join(cmd[:4])} ...` failed ({reason})")
    return proc.stdout


@functools.cache
def _installed() -> tuple[bool, bool]:
    have = shutil.which(ESPEAK) is not None, shutil.which(FLITE) is not None
    if not any(have):
        raise DataError(f"espeak-ng and flite are not installed: run `{INSTALL}`")
    for name, ok in zip((ESPEAK, FLITE), have):
        if not ok:
            warn(f"{name} is not installed, so its voices are left out: run `{INSTALL}`")
    return have


@functools.cache
def available_voices() -> list[Voice]:
    """Every installed voice: espeak-ng English accents alone and x variants, then flite voices.

    Raises:
        DataError: neither espeak-ng nor flite is installed (one missing is a warning).
    """
    has_espeak, has_flite = _installed()
    voices: list[Voice] = []
    if has_espeak:
        accents = []
        for line in _run([ESPEAK, "--voices=en"]).decode().splitlines()[1:]:
            language, *rest = line.split()[1:]
            file = next((p for p in rest[1:] if "/" in p), "mb/")  # rest[0] is age/gender
            if language != "variant" and not file.startswith("mb/") and language not in accents:
                accents.append(language)  # mbrola voices need packages of their own
        variants = [
            m.group(1)
            for line in _run([ESPEAK, "--voices=variant"]).decode().splitlines()[1:]
            if (m := re.search(r"!v/(.+?)(?:\s{2,}|\s+\(|$)", line.rstrip()))
        ]
        voices += [Voice(ESPEAK, a + v) for a in sorted(accents) for v in ["", *(f"+{v}" for v in sorted(variants))]]
    if has_flite:
        names = _run([FLITE, "-lv"]).decode().partition(":")[2].split()
        voices += [Voice(FLITE, name) for name in sorted(names) if name not in FLITE_SKIP]
    return list({v.id: v for v in voices}.values())


def default_voices() -> list[Voice]:
    """Every accent alone, every flite voice, and each espeak-ng variant once, dealt to the accents in turn."""
    voices = available_voices()
    accents = sorted({v.name for v in voices if v.engine == ESPEAK and "+" not in v.name})
    variants = sorted({v.name.split("+")[1] for v in voices if "+" in v.name})
    dealt = {f"{accents[i % len(accents)]}+{variant}" for i, variant in enumerate(variants)}
    return [v for v in voices if v.engine == FLITE or "+" not in v.name or v.name in dealt]


def select_voices(patterns: Sequence[str] | None = None) -> list[Voice]:
    """The default voices (``None`` or ``["default"]``), or those whose id matches a glob (``all`` is ``*``).

    Raises:
        DataError: a pattern matches no installed voice.
    """
    if not patterns or list(patterns) == ["default"]:
        return default_voices()
    voices = available_voices()
    chosen: set[str] = set()
    for pattern in patterns:
        ids = fnmatch.filter([v.id for v in voices], "*" if pattern == "all" else pattern)
        if not ids:
            raise DataError(f"--voices {pattern!r} matches no installed voice (kws synth --list-voices lists them)")
        chosen.update(ids)
    return [v for v in voices if v.id in chosen]


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


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little"))


def _decode(wav: bytes) -> np.ndarray:
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    return resample(audio, sr)


def _espeak(voice: Voice, items: Sequence[tuple[str, float, float]]) -> bytes:
    said = [f'<s><prosody rate="{r:.0%}" pitch="{50 * p:+.0f}%">{t}</prosody></s>' for t, r, p in items]
    ssml = "<speak>" + f'<break time="{PAUSE_MS}ms"/>'.join(said) + "</speak>"
    return _run([ESPEAK, "-m", "-v", voice.name, "--stdout", ssml])


def _flite(voice: Voice, text: str, rate: float, pitch: float) -> bytes:
    f0 = FLITE_F0.get(voice.name, FLITE_DEFAULT_F0) * PITCH_SPAN**pitch
    settings = ["--setf", f"duration_stretch={1 / rate:.4f}", "--setf", f"int_f0_target_mean={f0:.1f}"]
    return _run([FLITE, "-voice", voice.name, *settings, "-t", text, "-o", "/dev/stdout"])


def _split(audio: np.ndarray, count: int) -> list[np.ndarray] | None:
    """Cut at the ``count - 1`` longest silences; ``None`` if one of them is shorter than ``MIN_PAUSE``."""
    loud = np.flatnonzero(np.abs(audio) > SILENT)
    gaps = np.diff(loud)
    if len(gaps) < count - 1:
        return None
    cuts = np.sort(np.argsort(gaps, kind="stable")[len(gaps) - count + 1 :])
    if cuts.size and gaps[cuts].min() < MIN_PAUSE:
        return None
    return np.split(audio, (loud[cuts] + loud[cuts + 1]) // 2)


def speak(voice: Voice, items: Sequence[tuple[str, float, float]]) -> list[np.ndarray]:
    """Render ``(text, rate, pitch)`` items as float32 audio at 16 kHz, one array per item.

    ``rate`` multiplies the speaking rate; ``pitch`` in [-1, 1] lowers or raises the voice. espeak-ng says
    all the items in one call (its start-up costs more than a word) and the audio is cut at the pauses.
    """
    if voice.engine == FLITE:
        return [_decode(_flite(voice, *item)) for item in items]
    parts = _split(_decode(_espeak(voice, items)), len(items))
    if parts is None:  # a voice with echo fills the pauses: one call per item
        parts = [_decode(_espeak(voice, [item])) for item in items]
    return parts


def _trim(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > np.abs(audio).max(initial=0) * 10 ** (TRIM_DB / 20))
    return audio[max(loud[0] - EDGE, 0) : loud[-1] + EDGE + 1] if loud.size else audio[:0]


def clip_name(word: str, voice: Voice, n: int) -> str:
    """``<word>/<voice id>_nohash_<n>.wav``, relative to the corpus root."""
    return f"{word}/{voice.id}_nohash_{n}.wav"


def render_voice(out: Path, voice: Voice, words: Sequence[str], clips_per_voice: int, seed: int) -> int:
    """Write the missing clips of ``voice`` into ``out``; returns how many were written.

    Clip ``n`` of a word draws its rate, pitch, level and onset from ``(seed, word, voice, n)``. All the
    clips of the voice are rendered together even when some exist, so a file never depends on which were
    missing.
    """
    draws = {(w, n): _rng(seed, w, voice.id, n).uniform(size=4) for w in words for n in range(clips_per_voice)}
    low, high = RATE_OCTAVES
    items = [(w, 2 ** (low + d[0] * (high - low)), 2 * d[1] - 1) for (w, _), d in draws.items()]
    longest, written = int(MAX_SPEECH_SECONDS * SAMPLE_RATE), 0
    for ((word, n), draw), (_, rate, pitch), audio in zip(draws.items(), items, speak(voice, items)):
        path = out / clip_name(word, voice, n)
        if path.exists():
            continue
        speech = _trim(audio)
        for _ in range(MAX_RENDERS - 1):  # too long: say it faster
            if len(speech) <= longest:
                break
            rate *= 1.05 * len(speech) / longest
            speech = _trim(speak(voice, [(word, rate, pitch)])[0])
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
    save_audio(path, load_audio(source))
    return 1


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl+C


def _call(job: Callable[[], int]) -> int:
    return job()


def _check_out(out: Path, settings: dict) -> None:
    marker = out / MARKER
    if marker.is_file():
        old = json.loads(marker.read_text())
        if changed := ["--" + key.replace("_", "-") for key in settings if old.get(key) != settings[key]]:
            raise DataError(
                f"{out} holds a kws synth corpus made with different {', '.join(changed)}: "
                "re-run with the same settings to complete it, or choose another --out folder"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} is not empty and was not made by kws synth (no {MARKER}): choose another --out folder")


def synthesize(
    words: str | Sequence[str],
    out: str | os.PathLike,
    clips_per_voice: int = DEFAULT_CLIPS_PER_VOICE,
    seed: int = 0,
    jobs: int | None = None,
    voices: Sequence[str] | None = None,
    noise_dir: str | os.PathLike | None = None,
) -> Path:
    """Render a corpus into ``out`` (see the module docstring) and return ``out``.

    Args:
        words: A preset (``gsc-v2-12``, ``gsc-v2-35``), a comma list, or a list of words.
        out: The corpus folder: new, empty, or an earlier corpus of the same settings (completed).
        clips_per_voice: Clips of each word by each voice.
        seed: The seed of every random draw.
        jobs: Worker processes (default: one per CPU).
        voices: Globs over voice ids (``all`` for every voice); ``None`` takes :func:`default_voices`.
        noise_dir: A folder of real noise recordings for ``_background_noise_`` instead of generated noise.

    Raises:
        DataError: no TTS engine, bad words or voices, an output folder that is not this corpus, or a
            noise folder without audio.
    """
    words, out, chosen = resolve_words(words), Path(out), select_voices(voices)
    if clips_per_voice < 1 or (jobs is not None and jobs < 1):
        raise DataError(f"--clips-per-voice and --jobs must be at least 1, not {clips_per_voice} and {jobs}")
    noise_files = []
    if noise_dir is not None:
        noise_dir = Path(noise_dir)
        noise_files = audio_files(noise_dir)
        if not noise_files:
            raise DataError(f"--noise-dir {noise_dir} holds no audio files")
    settings = {
        "words": list(words),
        "voices": [v.id for v in chosen],
        "seed": seed,
        "clips_per_voice": clips_per_voice,
        "noise_dir": None if noise_dir is None else str(noise_dir.resolve()),
    }
    _check_out(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob("**/.*.tmp"):  # left by a killed run
        stray.unlink()
    write_text(out / MARKER, json.dumps(settings, indent=1) + "\n")

    noise = out / NOISE_DIR
    if noise_files:
        noise_jobs = {noise / f"{p.stem}.wav": functools.partial(_convert, p) for p in noise_files}
    else:
        talkers = [v for v in chosen if v.split == "train"] or chosen  # held-out voices stay unheard in training
        make = functools.partial(render_noise, voices=talkers, avoid=words, seed=seed)
        noise_jobs = {noise / f"{kind}.wav": functools.partial(make, kind=kind) for kind in (BABBLE, *COLORS)}
    todo = [(1, functools.partial(job, path)) for path, job in noise_jobs.items() if not path.exists()]
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for voice in sorted(chosen, key=lambda v: v.engine != FLITE):  # the slower flite voices first
        names = [clip_name(word, voice, n) for word in words for n in range(clips_per_voice)]
        lists.get(voice.split, []).extend(names)
        if missing := sum(not (out / name).exists() for name in names):
            todo.append((missing, functools.partial(render_voice, out, voice, words, clips_per_voice, seed)))

    begin, total = time.perf_counter(), sum(count for count, _ in todo)
    if todo:
        columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        pool = multiprocessing.get_context("fork").Pool(jobs or os.cpu_count(), _worker_init)  # inherits imports
        with pool, Progress(*columns, console=console) as bar:
            task = bar.add_task("synth", total=total)
            for written in pool.imap_unordered(_call, [job for _, job in todo]):
                bar.advance(task, written)
    for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST)):
        write_text(out / name, "".join(rel + "\n" for rel in sorted(lists[split])))
        if not lists[split]:
            warn(f"no chosen voice is in the {split} split, so {name} is empty")
    clips = len(words) * len(chosen) * clips_per_voice
    console.print(
        f"{out}: {clips} clips ({len(words)} words x {len(chosen)} voices x {clips_per_voice}), "
        f"{total} files written in {time.perf_counter() - begin:.0f} s",
        highlight=False,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """``kws synth``: parse ``argv`` and render the corpus; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kws synth",
        description="Render words with espeak-ng and flite voices into a Speech Commands-layout corpus.",
    )
    add = parser.add_argument
    add("--words", help=f"comma-separated words and presets: {', '.join(PRESETS)} (the gsc presets both render all "
        f"35 words; other-words: {len(PRESETS['other-words'])} other English words for _unknown_)")
    add("--out", type=Path, help="output folder: new, empty, or an unfinished corpus to complete")
    add("--clips-per-voice", type=int, default=DEFAULT_CLIPS_PER_VOICE, help="clips per word and voice (default: 1)")
    add("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    add("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: %(default)s, the CPU count)")
    add("--noise-dir", type=Path, help="folder of noise recordings for _background_noise_ instead of generated noise")
    add("--voices", default="default", help="comma-separated globs over voice ids (see --list-voices), 'all', or "
        "'default' (the default): every accent and flite voice alone, and each espeak-ng variant once")  # fmt: skip
    add("--list-voices", action="store_true", help="list the installed voices, their split and the default set")
    args = parser.parse_args(argv)
    if args.list_voices:
        chosen = {v.id for v in default_voices()}
        for v in available_voices():
            console.print(f"{v.id:<40} {v.split:<11} {'default' if v.id in chosen else ''}", highlight=False)
        return 0
    if args.words is None or args.out is None:
        parser.error("--words and --out are required")
    synthesize(args.words, args.out, args.clips_per_voice, args.seed, args.jobs, args.voices.split(","), args.noise_dir)
    return 0
