"""Folders of negative audio (files of any length without command words said alone): which files, and their split.

Shared by training (``data.negatives``, :mod:`pipeline.train.datamodule`) and mining (:mod:`pipeline.mining`), so
that a file is in the same split for both: the folder's list files when present, else the speaker hash.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.speech_commands import NOISE_DIR, TESTING_LIST, VALIDATION_LIST, speaker_of, which_set
from pipeline.runtime.audio import AUDIO_SUFFIXES

VALIDATION_PERCENTAGE, TESTING_PERCENTAGE = 10.0, 10.0  # the speaker hash's shares, as for clips


def negative_files(root: Path) -> tuple[list[Path], dict[str, set[str]] | None]:
    """The audio files anywhere under ``root`` (``_background_noise_`` left out) and its list files, if any."""
    lists = None
    if (root / VALIDATION_LIST).is_file() and (root / TESTING_LIST).is_file():
        lists = {split: set((root / name).read_text().split())
                 for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST))}  # fmt: skip
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                   and NOISE_DIR not in p.relative_to(root).parts)  # fmt: skip
    return files, lists


def file_speaker(path: Path) -> str:
    """The speaker of a negative file: of a ``<speaker>_nohash_<n>`` name, else its folder's name."""
    return speaker_of(path.name) if "_nohash_" in path.name else path.parent.name


def file_split(root: Path, path: Path, lists: dict[str, set[str]] | None, salt: str = "",
               percentages: tuple[float, float] = (VALIDATION_PERCENTAGE, TESTING_PERCENTAGE)) -> str:  # fmt: skip
    """The split of a negative file: its folder's list files, else the speaker hash (``data.negatives``' rule)."""
    if lists is not None:
        rel = path.relative_to(root).as_posix()
        return next((split for split in ("validation", "test") if rel in lists[split]), "train")
    return which_set(salt + file_speaker(path), *percentages)
