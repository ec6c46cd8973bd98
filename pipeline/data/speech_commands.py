"""The Speech Commands corpus: word lists, tasks, folder layouts and the speaker-disjoint split rule.

Two layouts are read:

* ``google``: ``<root>/<word>/<speaker>_nohash_<n>.wav`` with ``validation_list.txt``,
  ``testing_list.txt`` and ``_background_noise_/`` (the training archive, or a corpus made by ``kws synth``);
* ``archive``: ``<root>/<label>/*.wav`` with ``_silence_/`` and ``_unknown_/`` folders (the official
  test archive), where ``_unknown_`` files are named ``<word>_<speaker>_nohash_<n>.wav``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import DataError
from pipeline.runtime.audio import AUDIO_SUFFIXES
from pipeline.runtime.labels import SILENCE, UNKNOWN, is_word

NOISE_DIR = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

TWELVE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
WORDS_V1 = TWELVE_WORDS + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
)  # fmt: skip
WORDS_V2 = WORDS_V1 + ("backward", "follow", "forward", "learn", "visual")
WORDS = {1: WORDS_V1, 2: WORDS_V2}

MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # from the dataset's README: keeps the hash split stable as files are added
SPLITS = ("train", "validation", "test")


def speaker_of(filename: str) -> str:
    """The speaker id of ``<speaker>_nohash_<n>.wav`` (the whole stem if there is no ``_nohash_``)."""
    return re.sub(r"_nohash_.*$", "", Path(filename).stem)


def speaker_percentage(filename: str) -> float:
    """Where the speaker of ``filename`` falls in ``[0, 100]`` under the dataset's speaker hash."""
    hashed = hashlib.sha1(speaker_of(filename).encode()).hexdigest()
    return (int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)


def which_fold(filename: str, folds: int) -> int:
    """The cross-validation fold (``0 .. folds - 1``) of a file's speaker: equal bands of the speaker hash."""
    return min(folds - 1, int(speaker_percentage(filename) * folds / 100.0))


def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """Assign a file to ``train``/``validation``/``test`` by hashing its speaker id (dataset README rule).

    All clips of one speaker land in the same split, and the assignment never changes as files are added.
    """
    percentage = speaker_percentage(filename)
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "test"
    return "train"


@dataclass(frozen=True)
class Task:
    """What the model tells apart.

    Args:
        words: The target words.
        silence_share: Silence clips per split, as a fraction of the target-word clips (0 drops the class).
        unknown_share: Clips of other words labelled ``_unknown_``, same fraction (0 drops the class).
    """

    words: tuple[str, ...]
    silence_share: float = 0.1
    unknown_share: float = 0.1

    @property
    def labels(self) -> list[str]:
        """Class names in output order: ``_silence_``, ``_unknown_`` (when used), then the words."""
        return [SILENCE] * (self.silence_share > 0) + [UNKNOWN] * (self.unknown_share > 0) + list(self.words)


def make_task(
    task: str | list[str], version: int = 2, silence_share: float | None = None, unknown_share: float | None = None
) -> Task:
    """Resolve ``12``, ``35`` (v0.02), ``30`` (v0.01) or a custom word list into a :class:`Task`.

    Shares left as ``None`` take the standard protocol: 10 % silence and 10 % unknown for ``12`` and custom
    lists; none for the every-word tasks.
    """
    if version not in WORDS:
        raise DataError(f"data.version must be 1 or 2, not {version}")
    every = {"35": 2, "30": 1}
    if isinstance(task, str) and task in every:
        if every[task] != version:
            raise DataError(
                f"task {task} is the every-word task of version {every[task]}, but data.version is {version}"
            )
        words, default_share = WORDS[version], 0.0
    elif isinstance(task, str) and task == "12":
        words, default_share = TWELVE_WORDS, 0.1
    elif isinstance(task, (list, tuple)) and task:
        words = tuple(str(w).strip() for w in task)
        if len(set(words)) != len(words) or not all(words) or not all(map(is_word, words)):
            raise DataError(f"data.task must list distinct word names that do not start with '_', got {list(task)}")
        default_share = 0.1
    else:
        raise DataError(f"data.task must be '12', '35', '30' or a list of words, not {task!r}")
    shares = [default_share if s is None else float(s) for s in (silence_share, unknown_share)]
    if any(s < 0 for s in shares):
        raise DataError("data.silence_share and data.unknown_share cannot be negative")
    return Task(tuple(words), *shares)


@dataclass
class Clip:
    """One recording: its path, the spoken word (or archive label) and its speaker."""

    path: Path
    word: str
    speaker: str


@dataclass
class Corpus:
    """The result of scanning a root folder."""

    root: Path
    layout: str  # "google" or "archive"
    clips: list[Clip]
    noise_files: list[Path] = field(default_factory=list)
    lists: dict[str, set[str]] | None = None  # split -> relative paths, when the list files exist

    def split_of(
        self, clip: Clip, validation_percentage: float, testing_percentage: float, use_lists: bool = True,
        salt: str = "", fold: tuple[int, int] | None = None,
    ) -> str:  # fmt: skip
        """The split of a clip: the list files when present (and ``use_lists``), else the hash of ``salt`` +
        its speaker id. ``fold = (k, folds)``: the speakers of fold ``k`` are the test split, the others are
        hashed into validation and train with no test share (speaker-disjoint cross-validation)."""
        if fold is not None:
            k, folds = fold
            if which_fold(salt + clip.speaker, folds) == k:
                return "test"
            return which_set(salt + clip.speaker, validation_percentage, 0.0)
        if use_lists and self.lists is not None:
            rel = clip.path.relative_to(self.root).as_posix()
            for split in ("validation", "test"):
                if rel in self.lists[split]:
                    return split
            return "train"
        return which_set(salt + clip.speaker, validation_percentage, testing_percentage)


def audio_files(folder: str | Path) -> list[Path]:
    """The audio files (any format libsndfile reads) directly in ``folder``, sorted; none if it is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def scan(root: str | Path) -> Corpus:
    """Read the folder structure of a Speech Commands root (no audio is decoded here); every audio format
    libsndfile reads counts.

    Raises:
        DataError: the folder does not exist or holds no word folders with audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no dataset at {root}: the folder does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    layout = "archive" if any(p.name in (SILENCE, UNKNOWN) for p in folders) else "google"
    clips: list[Clip] = []
    for folder in folders:
        if folder.name == NOISE_DIR:
            continue
        for path in audio_files(folder):
            if folder.name == UNKNOWN:
                word, _, rest = path.name.partition("_")
                clips.append(Clip(path, word if rest else UNKNOWN, speaker_of(rest or path.name)))
            elif folder.name == SILENCE:
                clips.append(Clip(path, SILENCE, path.stem))
            else:
                clips.append(Clip(path, folder.name, speaker_of(path.name)))
    if not clips:
        raise DataError(f"no dataset at {root}: no word folders with audio files were found")
    noise = audio_files(root / NOISE_DIR)
    lists = None
    if (root / VALIDATION_LIST).is_file() and (root / TESTING_LIST).is_file():
        lists = {
            split: {line.strip() for line in (root / name).read_text().splitlines() if line.strip()}
            for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST))
        }
    return Corpus(root, layout, clips, noise, lists)
