"""``kws synth``: layout, voice-disjoint splits, determinism, resume and the one-line errors (real TTS engines)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import cli
from pipeline.audio import CLIP_SAMPLES, SAMPLE_RATE
from pipeline.data import synth
from pipeline.data.speech_commands import NOISE_DIR, TESTING_LIST, VALIDATION_LIST, WORDS_V2, scan, speaker_of

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite")),
    reason="espeak-ng and flite are not installed (apt-get install -y espeak-ng flite)",
)

WORDS = ["yes", "no"]
VOICES = [
    "flite-kal16",
    "flite-slt",
    "espeak-en-us",
    "espeak-en-us-f3",
    "espeak-en-gb-x-rp-whisper",
    "espeak-en-gb-scotland-m3",
    "espeak-en-029-croak",
]
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
    assert speakers["test"] == {"flite-kal16", "flite-slt", "espeak-en-gb-scotland-m3"}
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


def test_rerun_after_interruption_completes_the_same_corpus(corpus: Path, tmp_path: Path):
    out = tmp_path / "resumed"
    shutil.copytree(corpus, out)
    for rel in ("yes/flite-slt_nohash_1.wav", "no/espeak-en-us-f3_nohash_0.wav", f"{NOISE_DIR}/white_noise.wav"):
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


LEARN_WORDS = ["yes", "stop", "up", "left"]  # chance: 25 %


def test_a_short_training_run_generalises_to_held_out_voices(tmp_path: Path) -> None:
    """Train on the training voices of a small default-voice corpus; test on the held-out voice families."""
    import lightning as L

    from conftest import one_thread
    from pipeline.data.datamodule import SpeechCommandsDataModule
    from pipeline.module import KWSModule

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
