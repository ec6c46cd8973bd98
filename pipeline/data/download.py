"""Fetch, verify and extract the official Speech Commands archives.

The archive is downloaded to ``<root>.part`` (resumed where it stopped when the server allows), renamed
to ``<root>.tar.gz`` only after its SHA-256 matches, and extracted into a temporary folder that is renamed
onto ``<root>`` when complete: an interrupted download or extraction is never taken for a dataset.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from pipeline.errors import DataError

ARCHIVES = {
    1: (
        "https://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    ),
    2: (
        "https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    ),
}
BLOCK = 1 << 20
TIMEOUT_S = 30


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, part: Path) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        resumed = have and getattr(response, "status", 200) == 206
        total = int(response.headers.get("Content-Length") or 0) + (have if resumed else 0)
        columns = (TextColumn("download"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns) as progress, open(part, "ab" if resumed else "wb") as out:
            task = progress.add_task("download", total=total or None, completed=have if resumed else 0)
            while block := response.read(BLOCK):
                out.write(block)
                progress.advance(task, len(block))


def _extract(archive: Path, root: Path) -> None:
    staging = root.with_name(root.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"cannot extract {archive} ({err}); delete it and download again") from None
    staging.rename(root)


def download_and_extract(root: str | Path, version: int = 2, url: str | None = None, sha256: str | None = None) -> Path:
    """Make ``root`` hold the extracted Speech Commands archive of ``version``.

    ``url`` and ``sha256`` override the official archive (a mirror, or a local ``file://`` archive).

    Raises:
        DataError: the download failed, the checksum differs, or the archive is broken; the message says
            where to put the data by hand.
    """
    root = Path(root)
    if version not in ARCHIVES:
        raise DataError(f"data.version must be 1 or 2, not {version}")
    default_url, default_sha = ARCHIVES[version]
    url, sha256 = url or default_url, sha256 or (default_sha if url is None else None)
    archive = root.with_name(root.name + ".tar.gz")
    part = root.with_name(root.name + ".part")
    root.parent.mkdir(parents=True, exist_ok=True)
    if not archive.exists():
        try:
            _fetch(url, part)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise DataError(
                f"could not download {url} ({reason}); download it by hand and extract it into {root.resolve()}"
            ) from None
        if sha256 and sha256_of(part) != sha256:
            part.unlink()
            raise DataError(f"the download of {url} is corrupt (SHA-256 mismatch) and was deleted; try again")
        part.rename(archive)
    _extract(archive, root)
    return root
