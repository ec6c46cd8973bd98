"""``kws synth``: layout, voice-disjoint splits, determinism, resume and the one-line errors (real TTS engines)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import cli
from pipeline.data import synth
from pipeline.data.speech_commands import NOISE_DIR, TESTING_LIST, VALIDATION_LIST, WORDS_V2, scan, speaker_of
from pipeline.data.synth.engines import _rng
from pipeline.data.synth.render import _trim
from pipeline.data.synth.voices import _festival_voices, _piper_voices, _voices_by_engine
from pipeline.runtime.audio import CLIP_SAMPLES, SAMPLE_RATE

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite")),
    reason="espeak-ng and flite are not installed (apt-get install -y espeak-ng flite)",
)

FESTIVAL_VOICES = ["festival-ked-diphone", "festival-kal-diphone", "festival-cmu-us-slt-arctic-hts"]
PIPER_VOICE = "piper-en-us-joe-medium"
HAS_FESTIVAL = bool(shutil.which("festival")) and {v.id for v in _festival_voices()} >= set(FESTIVAL_VOICES)
HAS_PIPER = bool(importlib.util.find_spec("piper")) and PIPER_VOICE in {v.id for v in _piper_voices()}
needs_festival = pytest.mark.skipif(not HAS_FESTIVAL, reason=f"festival voices missing ({synth.INSTALLS['festival']})")
needs_piper = pytest.mark.skipif(not HAS_PIPER, reason=f"piper is not installed ({synth.INSTALLS['piper']})")

WORDS = ["yes", "no"]
VOICES = [
    "flite-kal16",
    "flite-slt",
    "espeak-en-us",
    "espeak-en-us-f3",
    "espeak-en-gb-x-rp-whisper",
    "espeak-en-gb-scotland-m3",
    "espeak-en-029-croak",
    *(FESTIVAL_VOICES[:2] if HAS_FESTIVAL else []),  # the corpus tests cover each installed engine
    *([PIPER_VOICE] if HAS_PIPER else []),
]
HELD_OUT = {"flite-kal16", "flite-slt", "espeak-en-gb-scotland-m3", *(["festival-kal-diphone"] if HAS_FESTIVAL else [])}
CLIPS = 2


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return synth.synthesize(WORDS, out, clips_per_voice=CLIPS, seed=0, jobs=2, voices=VOICES)


def test_voice_ids_and_split_rule():
    voice = synth.Voice(synth.ESPEAK, "en-gb-scotland+Mr serious")
    assert voice.id == "espeak-en-gb-scotland-mr-serious"
    assert (voice.family, voice.split) == ("espeak-en-gb-scotland", "test")
    assert synth.Voice(synth.FLITE, "slt").split == "test"
    assert synth.Voice(synth.ESPEAK, "en-029+f1").split == "validation"
    assert synth.Voice(synth.ESPEAK, "en-gb-x-rp").split == "train"
    # festival's kal and slt are flite's speakers: held out with them; its ked and piper's joe train
    festival = [synth.Voice(synth.FESTIVAL, name) for name in ("ked_diphone", "kal_diphone", "cmu_us_slt_arctic_hts")]
    assert [v.id for v in festival] == FESTIVAL_VOICES and [v.family for v in festival] == FESTIVAL_VOICES
    assert [v.split for v in festival] == ["train", "test", "test"]
    joe = synth.Voice(synth.PIPER, "en_US-joe-medium")
    assert (joe.id, joe.family, joe.split) == (PIPER_VOICE, PIPER_VOICE, "train")
    assert synth.resolve_words("gsc-v2-12") == synth.resolve_words("gsc-v2-35") == WORDS_V2
    assert synth.resolve_words(" Yes,no ,yes") == ("yes", "no")
    # presets combine with each other and with words; the other-words list stays clear of the dataset's words
    other = synth.resolve_words("other-words")
    assert synth.resolve_words("gsc-v2-12,other-words,zebra") == WORDS_V2 + other and "zebra" in other
    assert len(other) >= 250 and not set(other) & set(WORDS_V2)
    assert all(synth.WORD_RE.fullmatch(w) for w in other)


def test_default_voices_take_every_accent_flite_voice_and_variant_once():
    everything, default = synth.available_voices(), synth.default_voices()
    assert all("_" not in v.id for v in everything) and len({v.id for v in everything}) == len(everything)
    variants = Counter(v.name.split("+")[1] for v in default if "+" in v.name)
    assert set(variants) == {v.name.split("+")[1] for v in everything if "+" in v.name}
    assert set(variants.values()) == {1}
    assert {v.family for v in default} == {v.family for v in everything}
    assert {"flite-kal16", "flite-slt", "espeak-en-us"} <= {v.id for v in default}
    assert {v.id for v in everything if v.engine in (synth.FESTIVAL, synth.PIPER)} <= {v.id for v in default}


def _f0(audio: np.ndarray) -> float:
    """Median pitch (Hz) of the loud 50 ms frames, by autocorrelation."""
    pitches = []
    for start in range(0, len(audio) - 800, 320):
        frame = audio[start : start + 800] - audio[start : start + 800].mean()
        if np.sqrt(np.mean(frame**2)) < 0.1 * np.abs(audio).max():
            continue
        corr = np.correlate(frame, frame, "full")[799:]
        lag = SAMPLE_RATE // 400 + int(np.argmax(corr[SAMPLE_RATE // 400 : SAMPLE_RATE // 60]))
        if corr[lag] > 0.5 * corr[0]:
            pitches.append(SAMPLE_RATE / lag)
    return float(np.median(pitches))


NEW_ENGINE_VOICES = [pytest.param(v, marks=needs_festival) for v in FESTIVAL_VOICES]
NEW_ENGINE_VOICES.append(pytest.param(PIPER_VOICE, marks=needs_piper))


@pytest.mark.parametrize("voice_id", NEW_ENGINE_VOICES)
def test_new_engines_say_a_word_at_the_asked_rate_and_pitch(voice_id: str):
    voice = next(v for v in synth.available_voices() if v.id == voice_id)
    items = [("seven", 1.0, 0.0), ("seven", 0.5, 0.0), ("seven", 1.0, -1.0), ("seven", 1.0, 1.0), ("go", 1.0, 0.0),
             ("seventeen", 1.0, 0.0)]  # fmt: skip
    normal, slow, low, high, short, long = (_trim(audio) for audio in synth.speak(voice, items))
    assert 0.25 < len(normal) / SAMPLE_RATE < 0.95, len(normal)  # a word, not silence or a sentence
    assert len(long) > 1.25 * max(len(short), len(normal))  # it says the words it is given
    assert 1.4 < len(slow) / len(normal) < 2.5  # half the rate: longer (HTS stretches the vowels most)
    assert 0.8 < len(low) / len(normal) < 1.25 and 0.8 < len(high) / len(normal) < 1.25  # pitch keeps the rate
    assert 80 < _f0(normal) < 250 and 1.2 < _f0(high) / _f0(low) < 2.0  # 1.15**2 resampled, 1.3**2 diphone f0


STYLE_VOICES = ["espeak-en-gb-x-rp-f3", pytest.param(PIPER_VOICE, marks=needs_piper)]  # flite and festival: no change


@pytest.mark.parametrize("voice_id", STYLE_VOICES)
def test_speaking_styles_set_the_intonation(voice_id: str):
    """A statement falls, a question rises, an exclamation starts higher than a statement."""
    voice = next(v for v in synth.available_voices() if v.id == voice_id)
    said = synth.speak(voice, [synth.Say("seven", style=style) for style in synth.STYLES])
    halves = {}
    for style, audio in zip(synth.STYLES, said):
        speech = _trim(audio)
        halves[style] = _f0(speech[: len(speech) // 2]), _f0(speech[len(speech) // 2 :])
    (start, end), (q_start, q_end) = halves["statement"], halves["question"]
    assert end < 0.95 * start and q_end > 1.03 * q_start, halves
    assert halves["exclamation"][0] > 1.05 * start, halves


def test_each_clip_draws_a_style(tmp_path: Path, capsys: pytest.CaptureFixture):
    voices, clips, styles = ["espeak-en-us"], 8, list(synth.STYLES)
    plain = synth.synthesize(["seven"], tmp_path / "plain", clips, voices=voices, jobs=1)
    styled = synth.synthesize(["seven"], tmp_path / "styled", clips, voices=voices, jobs=1, styles=styles)
    assert json.loads((styled / synth.MARKER).read_text())["styles"] == styles
    drawn = [styles[int(_rng(0, "seven", voices[0], n).uniform(size=7)[6] * len(styles))] for n in range(clips)]
    assert len(set(drawn)) >= 3, drawn
    for n, style in enumerate(drawn):  # (espeak-ng says a voice's clips in one call: statements move a little too)
        rel = f"seven/espeak-en-us_nohash_{n}.wav"
        plain_audio, styled_audio = sf.read(plain / rel)[0], sf.read(styled / rel)[0]
        assert style == "statement" or np.abs(plain_audio - styled_audio).max() > 0.2 * np.abs(plain_audio).max()
    status, err = _synth_cli(capsys, "--words", "seven", "--out", str(styled), "--voices", "espeak-en-us",
                             "--clips-per-voice", str(clips))  # fmt: skip
    assert status == 2 and "made with different --styles:" in err
    status, err = _synth_cli(capsys, "--words", "seven", "--out", str(tmp_path / "new"), "--styles", "question,shout")
    assert status == 2 and "error: unknown speaking style 'shout': choose from statement, question" in err
    assert err.count("error:") == 1 and not (tmp_path / "new").exists()


def test_pitch_spread_zero_keeps_each_voice_at_its_own_pitch(tmp_path: Path, capsys: pytest.CaptureFixture):
    f0s = {}
    for spread in (0.0, 1.0):
        out = synth.synthesize(
            ["seven"], tmp_path / str(spread), 6, voices=["espeak-en-us"], jobs=1, pitch_spread=spread
        )
        f0s[spread] = [_f0(sf.read(path)[0]) for path in sorted((out / "seven").glob("*.wav"))]
    assert max(f0s[0.0]) / min(f0s[0.0]) < 1.2 < 1.4 < max(f0s[1.0]) / min(f0s[1.0]), f0s
    status, err = _synth_cli(capsys, "--words", "seven", "--out", str(tmp_path / "new"), "--pitch-spread", "2")
    assert status == 2 and "error: --pitch-spread must be between 0 and 1, not 2.0" in err


def test_a_missing_engine_is_left_out_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
):
    """Without festival (not on PATH) and piper (not importable), the other engines' voices are listed."""
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == synth.FESTIVAL else which(name))
    monkeypatch.setitem(sys.modules, "piper", None)  # find_spec and import see no piper
    _voices_by_engine.cache_clear()
    try:
        status = cli.main(["synth", "--list-voices"])
        out, err = capsys.readouterr()
        assert status == 0 and "flite-slt" in out and "espeak-en-us " in out
        assert "festival-" not in out and "piper-" not in out
        lines = err.strip().splitlines()
        assert len(lines) == 2 and all(line.startswith("warning:") for line in lines), err
        assert "festival is not installed" in err and synth.FESTIVAL_PACKAGES in err
        assert "piper is not installed" in err and "kws-pipeline[voices]" in err
        for pattern, engine in (("festival-*", "festival"), (PIPER_VOICE, "piper")):
            status, err = _synth_cli(capsys, "--words", "yes", "--out", str(tmp_path / "out"), "--voices", pattern)
            assert status == 2 and f"asks for {engine} voices, which are not installed: run" in err
            assert err.count("error:") == 1 and "Traceback" not in err and not (tmp_path / "out").exists()
    finally:
        _voices_by_engine.cache_clear()


def test_layout_and_clip_format(corpus: Path):
    for word in WORDS:
        names = {p.name for p in (corpus / word).iterdir()}
        assert names == {f"{voice}_nohash_{n}.wav" for voice in VOICES for n in range(CLIPS)}
        for name in names:
            info = sf.info(corpus / word / name)
            assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
            assert info.frames == CLIP_SAMPLES
            audio, _ = sf.read(corpus / word / name)
            assert 0.05 < np.abs(audio).max() < 1.0
    noise = sorted((corpus / NOISE_DIR).iterdir())
    assert [p.name for p in noise] == ["babble.wav", "brown_noise.wav", "pink_noise.wav", "white_noise.wav"]
    assert all(sf.info(p).frames == synth.NOISE_SECONDS * SAMPLE_RATE for p in noise)
    marker = json.loads((corpus / synth.MARKER).read_text())
    assert marker["words"] == WORDS and sorted(marker["voices"]) == sorted(VOICES) and marker["seed"] == 0
    scanned = scan(corpus)
    assert scanned.layout == "google" and len(scanned.clips) == len(WORDS) * len(VOICES) * CLIPS
    assert len(scanned.noise_files) == 4


def test_splits_are_voice_disjoint_and_held_out_voices_differ_in_kind(corpus: Path):
    lists = {
        split: (corpus / name).read_text().splitlines()
        for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST))
    }
    assert all((corpus / rel).is_file() for rels in lists.values() for rel in rels)
    speakers = {split: {speaker_of(rel) for rel in rels} for split, rels in lists.items()}
    speakers["train"] = set(VOICES) - speakers["validation"] - speakers["test"]
    assert not speakers["validation"] & speakers["test"]
    assert speakers["test"] == HELD_OUT
    assert speakers["validation"] == {"espeak-en-029-croak"}
    assert not any(s.startswith("flite") for s in speakers["train"] | speakers["validation"])
    for split, rels in lists.items():  # every clip of a held-out voice is listed
        assert len(rels) == len(speakers[split]) * len(WORDS) * CLIPS


def test_same_seed_gives_identical_files_and_another_seed_other_clips(corpus: Path, tmp_path: Path):
    again = synth.synthesize(WORDS, tmp_path / "again", clips_per_voice=CLIPS, seed=0, jobs=1, voices=VOICES)
    assert _files(again) == _files(corpus)
    voices = ["flite-kal16", "espeak-en-us", "espeak-en-gb-x-rp-whisper"]
    other = synth.synthesize(WORDS, tmp_path / "other", CLIPS, seed=1, voices=voices, noise_dir=corpus / NOISE_DIR)
    clips = [f"{word}/{voice}_nohash_{n}.wav" for word in WORDS for voice in voices for n in range(CLIPS)]
    assert all((other / rel).read_bytes() != (corpus / rel).read_bytes() for rel in clips)
    assert (other / NOISE_DIR / "pink_noise.wav").is_file()  # converted from --noise-dir
    theirs = (corpus / NOISE_DIR / "babble.wav").read_bytes()  # a babble.wav of theirs wins over a new (seed 1) one
    assert (other / NOISE_DIR / "babble.wav").read_bytes() == theirs


def test_real_noise_keeps_the_generated_babble(tmp_path: Path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    tap = 0.05 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE)
    sf.write(recordings / "tap.wav", tap, SAMPLE_RATE, subtype="PCM_16")
    out = synth.synthesize(["yes"], tmp_path / "out", voices=["espeak-en-us"], jobs=1, noise_dir=recordings)
    assert sorted(p.name for p in (out / NOISE_DIR).iterdir()) == ["babble.wav", "tap.wav"]
    babble, rate = sf.read(out / NOISE_DIR / "babble.wav")
    assert rate == SAMPLE_RATE and len(babble) == synth.NOISE_SECONDS * SAMPLE_RATE
    assert np.sqrt(np.mean(babble**2)) == pytest.approx(synth.BABBLE_RMS, rel=0.05)


def test_rerun_after_interruption_completes_the_same_corpus(corpus: Path, tmp_path: Path):
    out = tmp_path / "resumed"
    shutil.copytree(corpus, out)
    removed = ["yes/flite-slt_nohash_1.wav", "no/espeak-en-us-f3_nohash_0.wav", f"{NOISE_DIR}/white_noise.wav"]
    removed += [f"no/{voice}_nohash_1.wav" for voice in VOICES if voice.startswith(("festival", "piper"))]
    for rel in removed:
        (out / rel).unlink()
    (out / TESTING_LIST).unlink()
    (out / "no" / ".espeak-en-us_nohash_1.wav.abc123.tmp").write_bytes(b"RIFF")  # a killed write
    untouched = out / "yes" / "espeak-en-us_nohash_0.wav"
    mtime = untouched.stat().st_mtime_ns
    synth.synthesize(WORDS, out, clips_per_voice=CLIPS, seed=0, jobs=2, voices=VOICES)
    assert _files(out) == _files(corpus)
    assert untouched.stat().st_mtime_ns == mtime


def _synth_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    status = cli.main(["synth", *args])
    return status, capsys.readouterr().err


def test_errors_are_one_sentence_with_exit_status_2(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    out = str(tmp_path / "new")
    status, err = _synth_cli(capsys, "--words", " , ", "--out", out)
    assert status == 2 and "error: the word list is empty" in err
    status, err = _synth_cli(capsys, "--words", "yes,n0", "--out", out)
    assert status == 2 and "error: cannot speak 'n0'" in err
    status, err = _synth_cli(capsys, "--words", "yes", "--out", out, "--voices", "nobody-*")
    assert status == 2 and "matches no installed voice" in err
    (tmp_path / "empty").mkdir()
    status, err = _synth_cli(capsys, "--words", "yes", "--out", out, "--noise-dir", str(tmp_path / "empty"))
    assert status == 2 and "holds no audio files" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    status, err = _synth_cli(capsys, "--words", "yes", "--out", str(tmp_path / "other"))
    assert status == 2 and "is not empty and was not made by kws synth" in err
    before = _files(corpus)
    status, err = _synth_cli(capsys, "--words", ",".join(WORDS), "--out", str(corpus), "--voices", ",".join(VOICES),
                             "--clips-per-voice", str(CLIPS), "--seed", "7")  # fmt: skip
    assert status == 2 and "made with different --seed:" in err
    status, err = _synth_cli(capsys, "--words", "yes,no,up", "--out", str(corpus), "--voices", ",".join(VOICES))
    assert status == 2 and "made with different --words, --clips-per-voice:" in err
    assert _files(corpus) == before and not (tmp_path / "new").exists()
    older = tmp_path / "older"  # a corpus whose marker predates the renderer: its festival clips say "text"
    older.mkdir()
    marker = json.loads((corpus / synth.MARKER).read_text())
    (older / synth.MARKER).write_text(json.dumps({k: v for k, v in marker.items() if k != "renderer"}))
    status, err = _synth_cli(capsys, "--words", ",".join(WORDS), "--out", str(older), "--voices", ",".join(VOICES),
                             "--clips-per-voice", str(CLIPS))  # fmt: skip
    assert status == 2 and "was made by an older kws synth" in err and sorted(older.iterdir()) == [older / synth.MARKER]


LEARN_WORDS = ["yes", "stop", "up", "left"]  # chance: 25 %


def test_a_short_training_run_generalises_to_held_out_voices(tmp_path: Path) -> None:
    """Train on the training voices of a small default-voice corpus; test on the held-out voice families."""
    import lightning as L
    from conftest import one_thread

    from pipeline.train.datamodule import SpeechCommandsDataModule
    from pipeline.train.module import KWSModule

    root = synth.synthesize(LEARN_WORDS, tmp_path / "corpus", clips_per_voice=2, seed=0, jobs=2)
    L.seed_everything(0, verbose=False)
    data = SpeechCommandsDataModule(
        root=str(root), task=LEARN_WORDS, silence_share=0, unknown_share=0, batch_size=32, cache_dir=None
    )
    module = KWSModule(data.labels, optimizer={"lr": 5e-3, "warmup_epochs": 1.0}, label_smoothing=0.1)
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)  # fmt: skip
    with one_thread():
        trainer.fit(module, data)
        accuracy = trainer.test(module, data, verbose=False)[0]["test_acc"]
    assert len(data.datasets["test"]) >= 100
    assert accuracy > 0.6, f"held-out voices: {accuracy:.1%}"
