"""Atomic file writes: a reader never sees a half-written file, even after Ctrl+C."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, keep_on_error: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Args:
        path: The file to write.
        keep_on_error: Rename even when the block raises (Ctrl+C included), for files that are valid at every
            moment, such as a recording; otherwise the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_path("report.csv") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("a,b\\n")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if keep_on_error and tmp_path.exists():
            os.replace(tmp_path, path)
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
