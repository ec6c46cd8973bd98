"""Lightning ``DataModule`` for Speech Commands roots (one, or a weighted mixture of several)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from pipeline.console import warn
from pipeline.data.cache import LongStore, decode_files, decode_long
from pipeline.data.download import download_and_extract
from pipeline.data.negatives import file_split, negative_files
from pipeline.data.speech_commands import SILENCE, SPLITS, UNKNOWN, Corpus, Task, audio_files, is_word, make_task, scan
from pipeline.errors import AudioError, DataError
from pipeline.runtime.audio import CLIP_SAMPLES, SAMPLE_RATE, clip_samples, read_audio
from pipeline.train.augment import AugmentConfig, WaveAugment

SILENCE_STORE = -1  # store index of generated silence clips
NEGATIVE_STORE = -2  # store index of windows cut from the negative audio
NEGATIVE_STREAM = 2  # seeds the negative windows apart from the silence clips
MAX_REPORTED = 3  # unreadable files named in the warning
SplitRule = Literal["auto", "hash", "test", "fold"]


class KWSDataset(Dataset):
    """Clips of one split.

    Args:
        stores: int16 arrays of decoded clips, one per root.
        items: ``(n, 2)`` array of ``(store, row)``; store ``-1`` is silence clip number ``row``, cut from
            ``noise`` at a position and gain fixed by ``seed`` and ``row`` (the same on every epoch); store ``-2``
            is negative window number ``row``, cut from a file of ``negatives`` at a position fixed the same way:
            a folder drawn uniformly (``negatives.groups``), then one of its files by length.
        labels: Class index of each item.
        noise: 1-D float32 background noise; ``None`` makes silence clips digital zeros.
        seed: Seed of the silence clips' positions and gains.
        clip_samples: Samples per clip (silence clips are cut to this length).
        negatives: Audio files without command words said alone, of this split.
    """

    def __init__(
        self, stores: list[np.ndarray], items: np.ndarray, labels: np.ndarray, noise: np.ndarray | None, seed: int = 0,
        clip_samples: int = CLIP_SAMPLES, negatives: LongStore | None = None,
    ) -> None:  # fmt: skip
        self.stores, self.items, self.labels, self.noise, self.seed = stores, items, labels, noise, seed
        self.clip_samples, self.negatives = clip_samples, negatives
        if negatives is not None:
            groups = negatives.groups if negatives.groups is not None else np.zeros(len(negatives.lengths), int)
            self._groups = [np.flatnonzero((groups == g) & (negatives.lengths > 0)) for g in np.unique(groups)]
            self._groups = [files for files in self._groups if len(files)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        store, row = self.items[i]
        if store == SILENCE_STORE:
            n = self.clip_samples
            clip = np.zeros(n, dtype=np.float32)
            if self.noise is not None and len(self.noise) >= n:
                rng = np.random.default_rng((self.seed, int(row)))
                start = rng.integers(0, len(self.noise) - n + 1)
                clip = self.noise[start : start + n] * np.float32(rng.uniform(0.0, 1.0))
        elif store == NEGATIVE_STORE:
            clip = self._negative(int(row))
        else:
            clip = self.stores[store][row].astype(np.float32) / 32768.0
        return torch.from_numpy(np.ascontiguousarray(clip)), int(self.labels[i])

    def _negative(self, row: int) -> np.ndarray:
        """Negative window ``row``: a file drawn by length, a window of it (the whole file, padded, if shorter)."""
        assert self.negatives is not None
        rng = np.random.default_rng((self.seed, NEGATIVE_STREAM, row))
        files = self._groups[rng.integers(len(self._groups))]
        by_length = np.cumsum(self.negatives.lengths[files]) / self.negatives.lengths[files].sum()
        k = int(files[min(int(np.searchsorted(by_length, rng.uniform(), side="right")), len(files) - 1)])
        start, length, n = int(self.negatives.starts[k]), int(self.negatives.lengths[k]), self.clip_samples
        offset = int(rng.integers(0, max(0, length - n) + 1))
        clip = np.zeros(n, dtype=np.float32)
        piece = self.negatives.audio[start + offset : start + min(length, offset + n)]
        clip[: len(piece)] = piece.astype(np.float32) / 32768.0
        return clip


@dataclass
class _Split:
    items: list[tuple[int, int]]
    labels: list[int]


class SpeechCommandsDataModule(L.LightningDataModule):
    """Speech Commands data for training, validation and test.

    Args:
        root: Dataset folder (Google layout or the official test-archive layout), or a list of folders to mix.
        weights: Training weight of each root in a mixture (default: equal); a root's clips are drawn in
            proportion to its weight, whatever its size.
        version: Speech Commands version, 1 (30 words) or 2 (35 words).
        download: Fetch the official archive of ``version`` into ``root`` when it is missing.
        task: ``"12"`` (ten words + silence + unknown), ``"35"``/``"30"`` (every word) or a list of words.
        silence_share: Silence clips per split as a fraction of the word clips (default 0.1 for 12 and word
            lists, 0 for every-word tasks; 0 drops the class).
        unknown_share: Other-word clips labelled ``_unknown_``, same fraction and defaults.
        split: ``auto`` (list files if present, else speaker hash; an archive-layout root is all test),
            ``hash`` (speaker hash, ignoring list files), ``test`` (the whole root is the test split) or
            ``fold`` (speaker-disjoint cross-validation: the speakers of fold ``fold`` of ``folds`` are the
            test split, the rest are hashed into validation and train); a list gives one rule per root.
        validation_percentage: Share of speakers hashed into validation.
        testing_percentage: Share of speakers hashed into test.
        folds: Number of cross-validation folds of the ``fold`` rule (equal bands of the salted speaker hash).
        fold: The fold (``0 .. folds - 1``) that the ``fold`` rule makes the test split.
        hash_salt: Text put before each speaker id when hashing. The official test archive's speakers were
            themselves chosen by the standard hash (they all fall in its test band), so re-splitting that
            folder needs a salt.
        noise_dir: Extra folder of background-noise recordings (besides each root's ``_background_noise_``).
        negatives: Folders of audio without command words said on their own (running speech, sounds, the windows
            ``kws mine`` keeps), files of any length anywhere beneath (``_background_noise_`` left out): windows
            of 1 s cut anywhere from them are ``_unknown_`` (``_silence_`` for a task without ``_unknown_``);
            each folder gives an equal share of the windows, and within it each file its share by length.
            Their split: the folder's list files when present, else the speaker hash (the speaker of
            ``<speaker>_nohash_<n>`` names, else the file's folder), as for clips.
        negative_share: Negative windows per split, as a fraction of the word clips (default 0.5 when
            ``negatives`` are given).
        batch_size: Clips per batch.
        num_workers: DataLoader worker processes (clips come from memory, so 0 is usually fastest).
        cache_dir: Folder for the decoded-clip cache; ``null`` decodes into memory on every run.
        augment: Training waveform augmentation.
        seed: Seed of the unknown-word subsample and the silence clips.
        sample_rate: Rate the clips are decoded and augmented at; ``kws`` links it from the model's
            ``features.sample_rate`` (one source), so it is not set on its own there.
    """

    def __init__(
        self,
        root: str | list[str] = "data/speech_commands_v0.02",
        weights: list[float] | None = None,
        version: int = 2,
        download: bool = False,
        task: str | list[str] = "12",
        silence_share: float | None = None,
        unknown_share: float | None = None,
        split: SplitRule | list[SplitRule] = "auto",
        validation_percentage: float = 10.0,
        testing_percentage: float = 10.0,
        folds: int = 5,
        fold: int = 0,
        hash_salt: str = "",
        noise_dir: str | None = None,
        negatives: str | list[str] | None = None,
        negative_share: float = 0.5,
        batch_size: int = 128,
        num_workers: int = 0,
        cache_dir: str | None = "data/cache",
        augment: AugmentConfig = AugmentConfig(),
        seed: int = 0,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        super().__init__()
        self.roots = [Path(r) for r in ([root] if isinstance(root, (str, Path)) else root)]
        if not self.roots:
            raise DataError("data.root must name at least one folder")
        self.weights = list(weights) if weights is not None else [1.0] * len(self.roots)
        if len(self.weights) != len(self.roots):
            raise DataError(
                f"data.weights gives {len(self.weights)} weights for {len(self.roots)} data.root folder(s): "
                "give one per folder"
            )
        if any(w < 0 for w in self.weights) or not sum(self.weights):
            raise DataError("data.weights must be non-negative and not all zero")
        self.splits = [split] * len(self.roots) if isinstance(split, str) else list(split)
        if len(self.splits) != len(self.roots):
            raise DataError(
                f"data.split gives {len(self.splits)} rules for {len(self.roots)} data.root folder(s): "
                "give one rule, or one per folder"
            )
        self.version, self.download = version, download
        self.task: Task = make_task(str(task) if isinstance(task, int) else task, version, silence_share, unknown_share)
        self.labels: list[str] = self.task.labels
        self.percentages = (validation_percentage, testing_percentage)
        if folds < 2 or not 0 <= fold < folds:
            raise DataError(f"data.fold must lie in 0 .. data.folds - 1 with at least 2 folds, not {fold} of {folds}")
        self.fold = (fold, folds)
        self.hash_salt = hash_salt
        self.noise_dir = Path(noise_dir) if noise_dir else None
        negatives = [negatives] if isinstance(negatives, (str, Path)) else negatives or []
        self.negative_roots = [Path(r) for r in negatives]
        if negative_share < 0:
            raise DataError(f"data.negative_share cannot be negative, not {negative_share:g}")
        self.negative_share = negative_share
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.sample_rate, self.clip_samples = sample_rate, clip_samples(sample_rate)
        self.cache_dir = cache_dir
        self.augment = AugmentConfig(**augment) if isinstance(augment, dict) else augment
        self.datasets: dict[str, KWSDataset] = {}
        self.augmenter: WaveAugment | None = None

    def prepare_data(self) -> None:
        for root in self.roots:
            if root.exists():
                continue
            if not self.download:
                raise DataError(
                    f"no dataset at {root}: extract the Speech Commands archive there "
                    f"(or set data.download to true, or make a corpus with 'kws synth --out {root}')"
                )
            download_and_extract(root, self.version)
        for root in self.negative_roots:
            if not root.is_dir():
                raise DataError(
                    f"data.negatives {root} is not a folder: make running speech there with 'kws "
                    f"synth-speech --out {root}', or train without negatives (--data.negatives null)"
                )
        if self.cache_dir is not None:
            for root in self.roots:
                decode_files(
                    [c.path for c in scan(root).clips],
                    self.cache_dir,
                    self.sample_rate,
                    self.clip_samples,
                    description=f"caching {root}",
                )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        stores, splits = [], {s: _Split([], []) for s in SPLITS}
        if self.noise_dir and not self.noise_dir.is_dir():
            raise DataError(f"data.noise_dir {self.noise_dir} is not a folder")
        noise_files: list[Path] = []
        for index, root in enumerate(self.roots):
            corpus = scan(root)
            store = decode_files(
                [c.path for c in corpus.clips],
                self.cache_dir,
                self.sample_rate,
                self.clip_samples,
                description=f"decoding {root}",
            )
            if store.errors:
                first = list(store.errors.values())[:MAX_REPORTED]
                warn(f"skipped {len(store.errors)} unreadable audio file(s) in {root}: " + "; ".join(first))
            stores.append(store.audio)
            noise_files += corpus.noise_files
            self._assign(index, corpus, store.errors, splits)
        noise = self._load_noise(noise_files + (audio_files(self.noise_dir) if self.noise_dir else []))
        negatives = self._negatives(splits)
        self.datasets = {
            name: KWSDataset(
                stores,
                np.array(s.items, dtype=np.int64).reshape(-1, 2),
                np.array(s.labels),
                noise,
                seed,
                self.clip_samples,
                negatives.get(name),
            )  # fmt: skip
            for seed, (name, s) in enumerate(splits.items(), start=len(SPLITS) * self.seed)
        }
        self.item_weights = self._item_weights(splits["train"])
        self.augmenter = WaveAugment(self.augment, torch.from_numpy(noise) if noise is not None else None,
                                     self.sample_rate)  # fmt: skip

    def _assign(self, store: int, corpus: Corpus, errors: dict[str, str], splits: dict[str, _Split]) -> None:
        index = {label: i for i, label in enumerate(self.labels)}
        rule = self.splits[store]
        per_split: dict[str, dict[str, list[tuple[int, int]]]] = {s: {"known": [], "other": []} for s in SPLITS}
        skipped = 0
        for row, clip in enumerate(corpus.clips):
            if str(clip.path) in errors:
                continue
            if rule == "test" or (rule == "auto" and corpus.layout == "archive"):
                split = "test"
            else:
                split = corpus.split_of(
                    clip, *self.percentages, use_lists=rule == "auto", salt=self.hash_salt,
                    fold=self.fold if rule == "fold" else None,
                )  # fmt: skip
            word = clip.word
            if word in index and word not in (SILENCE, UNKNOWN):
                per_split[split]["known"].append((row, index[word]))
            elif corpus.layout == "archive" and word == SILENCE:
                if SILENCE in index:
                    per_split[split]["known"].append((row, index[SILENCE]))
                else:
                    skipped += 1
            elif UNKNOWN in index:
                target = "known" if corpus.layout == "archive" else "other"
                per_split[split][target].append((row, index[UNKNOWN]))
            else:
                skipped += 1
        if skipped and corpus.layout == "archive":
            warn(f"left out {skipped} clip(s) in {corpus.root} whose label is not among the model's labels")
        for offset, name in enumerate(SPLITS):
            known, other = per_split[name]["known"], per_split[name]["other"]
            out = splits[name]
            for row, label in known:
                out.items.append((store, row))
                out.labels.append(label)
            if corpus.layout == "archive":
                continue
            rng = np.random.default_rng((self.seed, store, offset))
            n_unknown = min(len(other), math.ceil(len(known) * self.task.unknown_share)) if UNKNOWN in index else 0
            for k in rng.choice(len(other), n_unknown, replace=False) if n_unknown else []:
                out.items.append((store, other[k][0]))
                out.labels.append(index[UNKNOWN])
            if SILENCE in index:
                first = sum(1 for s, _ in out.items if s == SILENCE_STORE)
                for k in range(math.ceil(len(known) * self.task.silence_share)):
                    out.items.append((SILENCE_STORE, first + k))
                    out.labels.append(index[SILENCE])

    def _negatives(self, splits: dict[str, _Split]) -> dict[str, LongStore]:
        """Decode the negative files of each split and add ``negative_share`` windows of them to it."""
        if not self.negative_roots:
            return {}
        index = {label: i for i, label in enumerate(self.labels)}
        label = index.get(UNKNOWN, index.get(SILENCE))
        if label is None:
            raise DataError("data.negatives need a task with _unknown_ or _silence_ to label them")
        files: dict[str, list[Path]] = {split: [] for split in SPLITS}
        groups: dict[str, list[int]] = {split: [] for split in SPLITS}
        for group, root in enumerate(self.negative_roots):
            if not root.is_dir():
                raise DataError(f"data.negatives {root} is not a folder")
            found, lists = negative_files(root)
            if not found:
                raise DataError(f"data.negatives {root} holds no audio files")
            for path in found:
                split = file_split(root, path, lists, self.hash_salt, self.percentages)
                files[split].append(path)
                groups[split].append(group)
        stores = {}
        for split in SPLITS:
            if not files[split]:
                continue
            store = decode_long(files[split], self.cache_dir, self.sample_rate, f"decoding {split} negatives")
            if store.errors:
                first = list(store.errors.values())[:MAX_REPORTED]
                warn(f"skipped {len(store.errors)} unreadable negative file(s): " + "; ".join(first))
            if not store.lengths.sum():
                continue
            store.groups = np.array(groups[split])
            stores[split] = store
            out = splits[split]
            words = sum(1 for s, y in zip(out.items, out.labels) if s[0] != SILENCE_STORE and is_word(self.labels[y]))
            for k in range(math.ceil(words * self.negative_share)):
                out.items.append((NEGATIVE_STORE, k))
                out.labels.append(label)
        return stores

    def _load_noise(self, files: list[Path]) -> np.ndarray | None:
        """The background-noise recordings, joined (unreadable ones are skipped with a warning)."""
        parts = []
        for path in files:
            try:
                parts.append(read_audio(path, self.sample_rate))
            except AudioError as err:
                warn(f"skipped a background-noise file: {err}")
        return np.concatenate(parts).astype(np.float32) if parts else None

    def _item_weights(self, train: _Split) -> np.ndarray:
        stores = np.array([s for s, _ in train.items], dtype=np.int64).reshape(-1)
        negative = stores == NEGATIVE_STORE
        # silence clips count towards the first root's share
        stores = np.where((stores == SILENCE_STORE) | negative, 0, stores)
        counts = np.bincount(stores[~negative], minlength=len(self.roots)).astype(np.float64)
        per_root = np.array(self.weights) / np.maximum(counts, 1)
        weights = per_root[stores]
        if negative.any() and (~negative).any():  # negatives are drawn at their share of the items
            weights[negative] = weights[~negative].mean()
        return weights

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        dataset = self.datasets[split]
        if not len(dataset):
            raise DataError(f"the {split} split is empty: no clips of the task's words were assigned to it")
        sampler = None
        if shuffle and (len(self.roots) > 1 or self.negative_roots):
            # a seeded generator: under DDP every rank draws the same sequence, and Lightning's sampler
            # wrapper gives each rank its own share of it
            generator = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(self.item_weights, len(dataset), replacement=True, generator=generator)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        trainer = self.trainer
        if trainer is not None and trainer.training and self.augmenter is not None:
            wave, labels = batch
            self.augmenter.to(wave.device)
            batch = (self.augmenter(wave), labels)
        return batch
