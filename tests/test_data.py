"""Speech Commands data: splits, task mapping, layouts, audio normalisation and bad files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_archive, make_corpus, tone_word

from pipeline.data.speech_commands import SILENCE, TWELVE_WORDS, UNKNOWN, make_task, scan, speaker_of, which_set
from pipeline.errors import DataError
from pipeline.runtime.audio import CLIP_SAMPLES, fit_length, read_audio
from pipeline.train.datamodule import SpeechCommandsDataModule


def _dm(root: Path | list[Path], **kwargs) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(
        root=[str(r) for r in root] if isinstance(root, list) else str(root), cache_dir=None, **kwargs
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _speakers(dm: SpeechCommandsDataModule, split: str) -> set[str]:
    ds = dm.datasets[split]
    paths = [p for p in sorted(Path(dm.roots[0]).rglob("*.wav")) if "_background_noise_" not in str(p)]
    return {speaker_of(paths[row].name) for store, row in ds.items if store == 0}  # clips of the first root


def test_hash_split_is_stable_and_speaker_disjoint() -> None:
    names = [f"speaker{s}_nohash_{n}.wav" for s in range(300) for n in range(3)]
    by_speaker: dict[str, set[str]] = {}
    for name in names:
        by_speaker.setdefault(speaker_of(name), set()).add(which_set(name))
    assert all(len(splits) == 1 for splits in by_speaker.values())
    shares = Counter(next(iter(s)) for s in by_speaker.values())
    assert 15 <= shares["validation"] <= 45 and 15 <= shares["test"] <= 45  # about 10 % each of 300
    assert which_set("abc_nohash_0.wav") == which_set("abc_nohash_7.wav")


def test_list_files_are_honoured(tone_corpus: Path) -> None:
    dm = _dm(tone_corpus)
    assert _speakers(dm, "validation") == {"spk000", "spk001"}
    assert _speakers(dm, "test") == {"spk002"}
    assert _speakers(dm, "train") == {f"spk{s:03d}" for s in range(3, 10)}


def test_hash_split_without_lists(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", ["yes", "no"], speakers=30, clips_per_speaker=1, lists=False)
    dm = _dm(root)
    splits = [_speakers(dm, s) for s in ("train", "validation", "test")]
    assert sum(len(s) for s in splits) == 30
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    # split: hash ignores the list files of a corpus that has them
    listed = make_corpus(tmp_path / "l", ["yes"], speakers=30, clips_per_speaker=1)
    hashed = _dm(listed, split="hash")
    assert _speakers(hashed, "validation") == {
        f"spk{s:03d}" for s in range(30) if which_set(f"spk{s:03d}") == "validation"
    }


def test_twelve_class_mapping(tone_corpus: Path) -> None:
    dm = _dm(tone_corpus)
    assert dm.labels == [SILENCE, UNKNOWN, *TWELVE_WORDS]
    for split in ("train", "validation", "test"):
        ds = dm.datasets[split]
        counts = Counter(dm.labels[i] for i in ds.labels)
        known = sum(counts[w] for w in TWELVE_WORDS)
        assert known > 0
        assert counts[SILENCE] == int(np.ceil(0.1 * known))
        assert counts[UNKNOWN] == min(int(np.ceil(0.1 * known)), known // 4 * 2)  # cat+dog clips available
        x, y = ds[len(ds) - 1]  # a silence clip, cut from the background noise
        assert x.shape == (CLIP_SAMPLES,) and dm.labels[y] == SILENCE
    # the unknown share is configurable, and 0 removes the class
    dm2 = _dm(tone_corpus, unknown_share=0.0, silence_share=0.3)
    assert UNKNOWN not in dm2.labels
    counts = Counter(dm2.labels[i] for i in dm2.datasets["train"].labels)
    assert counts[SILENCE] == int(np.ceil(0.3 * sum(counts[w] for w in TWELVE_WORDS)))


def test_every_word_and_custom_tasks(tone_corpus: Path) -> None:
    assert make_task("35").labels[:3] == ["yes", "no", "up"] and len(make_task("35").labels) == 35
    assert len(make_task("30", version=1).labels) == 30
    dm = _dm(tone_corpus, task=["cat", "dog"])
    assert dm.labels == [SILENCE, UNKNOWN, "cat", "dog"]
    for bad in ("13", [], ["yes", "yes"], ["_x"]):
        with pytest.raises(DataError):
            make_task(bad)
    with pytest.raises(DataError, match="version"):
        make_task("35", version=1)


def test_archive_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_archive(tmp_path / "archive", ["yes", "no"], ["cat", "bird"], speakers=3)
    corpus = scan(root)
    assert corpus.layout == "archive"
    assert {c.word for c in corpus.clips} == {"yes", "no", "cat", "bird", SILENCE}
    assert {c.speaker for c in corpus.clips if c.word == "cat"} == {"arch000", "arch001", "arch002"}
    dm = _dm(root)
    ds = dm.datasets["test"]
    assert len(ds) == 3 * 5 and len(dm.datasets["train"]) == 0
    counts = Counter(dm.labels[i] for i in ds.labels)
    assert counts == {"yes": 3, "no": 3, UNKNOWN: 6, SILENCE: 3}
    assert "left out" not in capsys.readouterr().err
    # a task without the silence class leaves those clips out, and says so
    dm = _dm(root, task=["yes", "no"], silence_share=0)
    assert dm.labels == [UNKNOWN, "yes", "no"] and len(dm.datasets["test"]) == 12
    assert f"left out 3 clip(s) in {root} whose label is not among the model's labels" in capsys.readouterr().err


def test_any_rate_and_channels_become_one_second_mono(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stereo = np.stack([tone_word("yes", rng, 1.5, 8000), tone_word("yes", rng, 1.5, 8000)], axis=1)
    sf.write(tmp_path / "a.flac", stereo, 8000)
    clip = fit_length(read_audio(tmp_path / "a.flac"))
    assert clip.shape == (CLIP_SAMPLES,)
    sf.write(tmp_path / "short.wav", np.ones(4000, dtype=np.float32) * 0.1, 44100)
    short = fit_length(read_audio(tmp_path / "short.wav"))
    assert short.shape == (CLIP_SAMPLES,) and np.abs(short[2000:]).max() == 0  # zero-padded at the end


def test_bad_files_are_skipped_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_corpus(tmp_path / "c", ["yes", "no"], speakers=6, clips_per_speaker=1)
    (root / "yes" / "spk004_nohash_9.wav").write_bytes(b"")  # zero-length
    (root / "no" / "spk004_nohash_9.wav").write_text("not audio at all")
    header_only = root / "no" / "spk005_nohash_9.wav"
    sf.write(header_only, np.zeros(0, dtype=np.float32), 16000)  # a valid WAV with no samples
    dm = _dm(root)
    err = capsys.readouterr().err
    assert "skipped 3 unreadable audio file(s)" in err and "spk004_nohash_9.wav" in err
    assert sum(len(ds) for ds in dm.datasets.values()) > 0
    total_words = sum(1 for ds in dm.datasets.values() for y in ds.labels if dm.labels[y] in ("yes", "no"))
    assert total_words == 12  # the 12 good clips, none of the 3 bad ones


def test_missing_dataset_is_explained(tmp_path: Path) -> None:
    dm = SpeechCommandsDataModule(root=str(tmp_path / "nowhere"), cache_dir=None)
    with pytest.raises(DataError, match="no dataset at .*nowhere.*extract the Speech Commands archive there"):
        dm.prepare_data()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no word folders"):
        scan(tmp_path / "empty")


def test_cache_is_reused_and_rebuilt_on_change(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "c", ["yes"], speakers=4, clips_per_speaker=1)
    cache = tmp_path / "cache"
    dm = SpeechCommandsDataModule(root=str(root), cache_dir=str(cache), task=["yes"], silence_share=0, unknown_share=0)
    dm.prepare_data()
    first = sorted(cache.glob("*.npy"))
    assert len(first) == 1
    dm.setup("fit")
    assert sorted(cache.glob("*.npy")) == first  # setup reused it
    make_corpus(root, ["yes"], speakers=5, clips_per_speaker=1, seed=3)  # the corpus changes
    SpeechCommandsDataModule(root=str(root), cache_dir=str(cache), task=["yes"]).prepare_data()
    assert len(list(cache.glob("*.npy"))) == 2
    assert not list(cache.glob("*.tmp"))


def test_mixture_weights(tmp_path: Path) -> None:
    a = make_corpus(tmp_path / "a", ["yes", "no"], speakers=10, clips_per_speaker=4)
    b = make_corpus(tmp_path / "b", ["yes", "no"], speakers=10, clips_per_speaker=1, seed=5)
    dm = _dm([a, b], weights=[1.0, 3.0])
    items = dm.datasets["train"].items
    weights = dm.item_weights
    share_b = weights[items[:, 0] == 1].sum() / weights.sum()
    assert share_b == pytest.approx(0.75)
    assert {0, 1} <= set(items[:, 0].tolist())
    with pytest.raises(DataError, match="1 weights for 2 data.root folder"):
        SpeechCommandsDataModule(root=[str(a), str(b)], weights=[1.0])
    with pytest.raises(DataError, match="not all zero"):
        SpeechCommandsDataModule(root=[str(a), str(b)], weights=[0.0, 0.0])


def test_one_split_rule_per_root(tone_corpus: Path, tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "archive", ["yes", "no"], ["cat"], speakers=40)
    dm = _dm([tone_corpus, archive], split=["auto", "hash"], validation_percentage=10, testing_percentage=50)
    from_archive = {s: int((dm.datasets[s].items[:, 0] == 1).sum()) for s in ("train", "validation", "test")}
    assert all(from_archive.values())  # the archive is split by speaker too
    assert _speakers(dm, "validation") == {"spk000", "spk001"}  # the first root still follows its lists
    with pytest.raises(DataError, match="give one rule, or one per folder"):
        SpeechCommandsDataModule(root=[str(tone_corpus), str(archive)], split=["auto"])


def test_salted_hash_resplits_speakers_the_standard_hash_chose() -> None:
    from pipeline.data.speech_commands import Clip, Corpus

    speakers = [f"s{i}" for i in range(3000) if which_set(f"s{i}") == "test"][:100]  # like the test archive
    corpus = Corpus(Path("."), "archive", [Clip(Path(f"{s}.wav"), "yes", s) for s in speakers])
    plain = Counter(corpus.split_of(c, 10, 50, use_lists=False) for c in corpus.clips)
    salted = Counter(corpus.split_of(c, 10, 50, use_lists=False, salt="resplit:") for c in corpus.clips)
    assert plain == {"test": 100}
    assert salted["train"] > 20 and salted["test"] > 30 and salted["validation"] > 0


def test_folds_partition_the_speakers_and_the_fold_rule_tests_one_fold(tmp_path: Path) -> None:
    from pipeline.data.speech_commands import which_fold

    speakers = [f"s{i}" for i in range(2000)]
    folds = Counter(which_fold("resplit:" + s, 5) for s in speakers)
    assert set(folds) == set(range(5)) and min(folds.values()) > 300  # every speaker in one of 5 even folds
    archive = make_archive(tmp_path / "archive", ["yes", "no"], ["cat"], speakers=30)
    clips = scan(archive).clips  # the rows of the archive's store

    def speakers(dm: SpeechCommandsDataModule, split: str) -> set[str]:
        return {clips[row].speaker for store, row in dm.datasets[split].items}

    tested: list[set[str]] = []
    for fold in range(3):
        dm = _dm(archive, task=["yes", "no"], split="fold", folds=3, fold=fold, hash_salt="x:")
        held_out, trained = speakers(dm, "test"), speakers(dm, "train") | speakers(dm, "validation")
        assert held_out and speakers(dm, "train") and held_out.isdisjoint(trained)
        assert held_out | trained == {c.speaker for c in clips}
        tested.append(held_out)
    assert sum(map(len, tested)) == len(set().union(*tested)) == 30 + 30  # each speaker tested once (+ silences)
    with pytest.raises(DataError, match="data.fold must lie in"):
        SpeechCommandsDataModule(root=str(archive), split="fold", folds=3, fold=3)
