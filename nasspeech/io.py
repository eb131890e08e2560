"""Atomic file writes: the one helper every file nasspeech writes goes through.

A write lands in a uniquely named temp file in the target's folder, is flushed (and, for
files that must survive a power cut, fsync-ed), then renamed over the target. A crash or a
concurrent writer therefore never leaves a half-written file, and two writers never share a
temp name. This module imports nothing from nasspeech.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

_TEMP_SUFFIX = ".tmp"

__all__ = ["atomic_write", "atomic_write_with", "remove_stale_temp_files"]


def atomic_write_with(
    path: str | Path, writer: Callable[[IO[bytes]], object], *, fsync: bool = False
) -> Path:
    """Call ``writer(fh)`` on a fresh temp file beside ``path``, then rename it onto ``path``.

    ``fsync=True`` flushes the file and its folder to disk before and after the rename
    (checkpoints); without it the rename is still atomic against crashes of the process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files that writes killed mid-way (SIGKILL, power cut) left directly in
    ``folder`` (``.<name>.<random>.tmp``); returns them. Only for a folder no one else writes
    to now (a run directory under its lock)."""
    removed = []
    for p in Path(folder).glob(f".*{_TEMP_SUFFIX}"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return sorted(removed)


def atomic_write(path: str | Path, data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; see :func:`atomic_write_with`."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda fh: fh.write(payload), fsync=fsync)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
