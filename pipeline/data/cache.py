"""Decode a list of audio files once into a compact int16 array, cached on disk and memory-mapped.

The cache key covers every file's path, size and modification time plus the audio settings, so a changed
corpus or setting builds a new cache automatically. Files that cannot be decoded are recorded with the
reason and left out by the caller (reported, never silently).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.errors import AudioError
from pipeline.files import atomic_path, write_text
from pipeline.runtime.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_length, read_audio

CACHE_FORMAT = 1  # bump when the stored layout changes
CHUNK = 64


@dataclass
class ClipStore:
    """``audio[i]`` holds file ``i`` as int16; ``errors`` maps unreadable files to the reason."""

    audio: np.ndarray
    errors: dict[str, str]


def _decode(args: tuple[str, int, int]) -> tuple[np.ndarray | None, str | None]:
    path, sample_rate, length = args
    try:
        clip = fit_length(read_audio(path, sample_rate), length)
    except AudioError as err:
        return None, str(err)
    return np.round(np.clip(clip, -1.0, 1.0) * 32767).astype(np.int16), None


def cache_key(paths: list[Path], sample_rate: int, length: int) -> str:
    """Hash of the file list (path, size, mtime) and the audio settings."""
    digest = hashlib.sha1(f"{CACHE_FORMAT}:{sample_rate}:{length}".encode())
    for p in paths:
        st = p.stat()
        digest.update(f"\n{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def decode_files(
    paths: list[Path],
    cache_dir: str | Path | None = None,
    sample_rate: int = SAMPLE_RATE,
    length: int = CLIP_SAMPLES,
    workers: int | None = None,
    description: str = "decoding audio",
) -> ClipStore:
    """Decode ``paths`` into a ``(len(paths), length)`` int16 array, reusing the cache when it is current."""
    paths = list(paths)
    target = None
    if cache_dir is not None:
        key = cache_key(paths, sample_rate, length)
        target = Path(cache_dir) / f"clips-{key}.npy"
        index = target.with_suffix(".json")
        if target.exists() and index.exists():
            return ClipStore(np.load(target, mmap_mode="r"), json.loads(index.read_text()))
    audio = np.zeros((len(paths), length), dtype=np.int16)
    errors: dict[str, str] = {}
    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), sample_rate, length) for p in paths]
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=len(jobs))
        pool = None
        if workers > 1 and len(jobs) > CHUNK:
            pool = multiprocessing.get_context("fork").Pool(workers)
        try:
            results = pool.imap(_decode, jobs, chunksize=CHUNK) if pool else map(_decode, jobs)
            for i, (clip, err) in enumerate(results):
                if err is None:
                    audio[i] = clip
                else:
                    errors[jobs[i][0]] = err
                progress.advance(task)
        finally:
            if pool:
                pool.terminate()
    if target is not None:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, audio)
        write_text(target.with_suffix(".json"), json.dumps(errors))
    return ClipStore(audio, errors)


@dataclass
class LongStore:
    """Audio files of any length end to end as int16: file ``i`` is ``audio[starts[i] : starts[i] + lengths[i]]``;
    ``errors`` maps unreadable files to the reason; ``groups`` (the caller's) tells which folder each file is of."""

    audio: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    errors: dict[str, str]
    groups: np.ndarray | None = None


def _decode_whole(args: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    path, sample_rate = args
    try:
        audio = read_audio(path, sample_rate)
    except AudioError as err:
        return None, str(err)
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16), None


def decode_long(
    paths: list[Path], cache_dir: str | Path | None = None, sample_rate: int = SAMPLE_RATE,
    description: str = "decoding audio",
) -> LongStore:  # fmt: skip
    """Decode ``paths`` whole, end to end (a :class:`LongStore`), reusing the cache when it is current."""
    paths = list(paths)
    target = None
    if cache_dir is not None:
        target = Path(cache_dir) / f"long-{cache_key(paths, sample_rate, -1)}.npy"
        index = target.with_suffix(".json")
        if target.exists() and index.exists():
            meta = json.loads(index.read_text())
            return LongStore(np.load(target, mmap_mode="r"), np.array(meta["starts"], dtype=np.int64),
                             np.array(meta["lengths"], dtype=np.int64), meta["errors"])  # fmt: skip
    parts, lengths, errors = [], [], {}
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=len(paths))
        for path, (audio, err) in zip(paths, map(_decode_whole, [(str(p), sample_rate) for p in paths])):
            if err is None:
                parts.append(audio)
                lengths.append(len(audio))
            else:
                errors[str(path)] = err
                lengths.append(0)
            progress.advance(task)
    audio = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    lengths_arr = np.array(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]).astype(np.int64) if len(paths) else lengths_arr
    if target is not None:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, audio)
        write_text(
            target.with_suffix(".json"),
            json.dumps({"starts": starts.tolist(), "lengths": lengths_arr.tolist(), "errors": errors}),
        )
    return LongStore(audio, starts, lengths_arr, errors)
