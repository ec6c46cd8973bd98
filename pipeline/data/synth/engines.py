"""The engine adapters: one call of espeak-ng, flite, festival or piper says a list of :class:`Say` items, each at its
own rate, pitch, noise and style; :func:`speak` returns 16 kHz audio, one array per item."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import soundfile as sf

from pipeline.data.synth.voices import ESPEAK, FESTIVAL, FLITE, PIPER, Voice, _piper_models, _run
from pipeline.runtime.audio import SAMPLE_RATE, resample

if TYPE_CHECKING:
    from piper.config import PiperConfig

FLITE_F0 = {"slt": 170.0}  # mean pitch (Hz) of the flite voices; the others are near FLITE_DEFAULT_F0
FLITE_DEFAULT_F0 = 100.0
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
PIPER_NOISE = (0.4, 1.0)  # piper's noise_scale (its default 0.667): how varied the sound of each phoneme is
PIPER_NOISE_W = (0.4, 1.2)  # piper's noise_w (its default 0.8): how varied the phoneme lengths are
PITCH_SPAN = 1.3  # pitch in [-1, 1]: flite and festival mean pitch x 1.3**pitch, espeak-ng SSML pitch +-50 %
RESAMPLED_PITCH_SPAN = 1.15  # a pitch shift by resampling moves the formants too: a smaller span
RESAMPLED_STEP = 100  # Hz: the rate a shifted voice is read at is a multiple (a short resampling kernel)
# speaking styles: the mark that closes what is said (none: a word alone), whose intonation espeak-ng and piper
# follow; flite and festival say a lone word the same whatever the mark
STYLES = {"statement": "", "question": "?", "exclamation": "!", "list": ","}
DEFAULT_STYLES = ("statement",)
PAUSE_MS = 600  # between the words of one espeak-ng call
SILENT, MIN_PAUSE = 1e-3, int(0.3 * SAMPLE_RATE)  # the audio is cut at the longest quieter stretches


def _seed(*key: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(_seed(*key))


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
