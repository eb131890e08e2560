"""Run directories: created fresh, continued (``resume``) or started over (``restart``), each
under an advisory lock held for the run's life; never overwritten silently.

Every file a run writes goes through :func:`nasspeech.io.atomic_write` (unique temp name,
then rename), checkpoints with an fsync; a resume deletes the temp files that a killed
write left in the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nasspeech.io import atomic_write, remove_stale_temp_files
from nasspeech.workflow.errors import RunDirError, WorkflowError
from nasspeech.workflow.lock import LOCK_FILE, LOCK_FILES, RunLock

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"

__all__ = ["CHECKPOINT", "JsonlLog", "RunDirError", "WorkflowError", "open_run_dir",
           "write_json"]


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name not in LOCK_FILES] if path.is_dir() else []


def _check_new(path: Path) -> None:
    if _contents(path):
        raise RunDirError(f"run directory {path} already exists; pass --resume to continue it "
                          "(one without a checkpoint starts again), --restart to delete it and "
                          "start over, or choose another --out")


def _check_ours(path: Path, flag: str) -> None:
    """``--resume``/``--restart`` only touch a folder a run created (it holds a lock file)."""
    if _contents(path) and not (path / LOCK_FILE).exists():
        raise RunDirError(f"{flag} refuses {path}: it is not a nasspeech run directory "
                          f"(no {LOCK_FILE} in it); choose another --out")


def _clear(path: Path) -> None:
    """Delete a run directory's contents (not its lock): ``--restart``."""
    for p in _contents(path):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


@contextlib.contextmanager
def open_run_dir(path: str | Path, resume: bool = False, restart: bool = False
                 ) -> Iterator[Path]:
    """Create, continue or clear the run directory ``path`` and hold its lock meanwhile.

    Without ``resume`` or ``restart`` it must not exist yet (or be empty). With ``resume``
    the caller continues from what it finds (a directory without a checkpoint starts again).
    With ``restart`` its contents are deleted first. A second process on the same directory
    fails at once, naming the holder (:class:`~nasspeech.workflow.lock.RunLockedError`).
    """
    if resume and restart:
        raise RunDirError("--resume and --restart exclude each other")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {path} exists and is not a directory; choose "
                          "another --out")
    # checks before taking the lock, so that a foreign folder is left untouched
    if resume or restart:
        _check_ours(path, "--resume" if resume else "--restart")
    else:
        _check_new(path)
    path.mkdir(parents=True, exist_ok=True)
    with RunLock(path):
        if restart:
            _clear(path)
        elif not resume:
            _check_new(path)  # another run may have finished in it meanwhile
        else:  # what a killed run's last write left behind; we hold the lock
            for stale in remove_stale_temp_files(path):
                log.info("removed %s, left by an interrupted write", stale)
        yield path


class JsonlLog:
    """Per-epoch records, one JSON object a line. Reopened for a resume, it keeps only the
    records of epochs the checkpoint covers (a record written after the last checkpoint is
    dropped, then written again); the shortened file replaces the old one atomically."""

    def __init__(self, path: str | Path, keep_epochs: int = 0) -> None:
        self.path = Path(path)
        kept = []
        if keep_epochs and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line).get("epoch", 0) <= keep_epochs:
                    kept.append(line)
        atomic_write(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically."""
    return atomic_write(path, json.dumps(data, indent=2))
