"""Download: verification and extraction of an archive the test builds, and the offline message."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from conftest import make_corpus

from pipeline.data.download import download_and_extract, sha256_of
from pipeline.data.speech_commands import scan
from pipeline.errors import DataError
from pipeline.train.datamodule import SpeechCommandsDataModule


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    corpus = make_corpus(tmp_path / "src", ["yes", "no"], speakers=3, clips_per_speaker=1)
    path = tmp_path / "speech_commands_test.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for item in sorted(corpus.iterdir()):
            tar.add(item, arcname=f"./{item.name}")
    return path


def test_download_verify_extract(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "data" / "speech_commands_v0.02"
    download_and_extract(root, url=archive.as_uri(), sha256=sha256_of(archive))
    corpus = scan(root)
    assert len(corpus.clips) == 6 and corpus.lists is not None and corpus.noise_files
    assert not root.with_name(root.name + ".part").exists()
    assert not root.with_name(root.name + ".extracting").exists()


def test_corrupt_download_is_deleted(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "sc"
    with pytest.raises(DataError, match="corrupt"):
        download_and_extract(root, url=archive.as_uri(), sha256="0" * 64)
    assert not root.exists() and not root.with_name("sc.part").exists() and not root.with_name("sc.tar.gz").exists()


def test_interrupted_download_is_not_a_dataset(tmp_path: Path, archive: Path) -> None:
    root = tmp_path / "sc"
    part = root.with_name("sc.part")
    part.write_bytes(archive.read_bytes()[:100])  # what an interrupted transfer leaves
    dm = SpeechCommandsDataModule(root=str(root), cache_dir=None)
    with pytest.raises(DataError, match="no dataset at"):
        dm.prepare_data()  # download is off: the .part file is not taken for data
    download_and_extract(root, url=archive.as_uri(), sha256=sha256_of(archive))  # starts over, verifies
    assert len(scan(root).clips) == 6


def test_broken_archive_is_explained(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not a tar file")
    with pytest.raises(DataError, match="cannot extract"):
        download_and_extract(tmp_path / "sc", url=bad.as_uri())
    assert not (tmp_path / "sc").exists()


def test_offline_download_says_where_to_put_the_data(tmp_path: Path) -> None:
    root = tmp_path / "sc"
    with pytest.raises(DataError, match=f"download it by hand and extract it into {root}"):
        download_and_extract(root, url="http://127.0.0.1:9/speech_commands_v0.02.tar.gz")
