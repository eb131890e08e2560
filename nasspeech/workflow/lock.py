"""An advisory lock on a run directory, held for the run's life.

``fcntl.flock`` on ``<run dir>/.lock``: the kernel drops it when the process ends, however it
ends (SIGKILL included), so a stale lock never blocks a rerun. Who holds it (pid, host, start
time, command) is written, atomically, to ``.lock.json`` once the lock is taken; a second
process fails at once and names the holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from nasspeech.io import atomic_write
from nasspeech.workflow.errors import RunDirError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"
LOCK_FILES = frozenset({LOCK_FILE, HOLDER_FILE})


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock."""


def _holder() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def describe_holder(folder: Path) -> str:
    """``pid 123 on host, since ..., running `...```, or a note that it is not known yet."""
    try:
        h = json.loads((folder / HOLDER_FILE).read_text())
        return (f"pid {h['pid']} on {h['host']}, since {h['started']}, running "
                f"`{h['command']}`")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its details yet)"


class RunLock:
    """``with RunLock(folder):`` holds the lock of ``folder`` (which must exist)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(f"run directory {self.folder} is in use by "
                                     f"{describe_holder(self.folder)}") from None
        self._fd = fd
        atomic_write(self.folder / HOLDER_FILE, json.dumps(_holder()))
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        (self.folder / HOLDER_FILE).unlink(missing_ok=True)  # before the lock is dropped
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:  # noqa: PYI034 - Self needs Python 3.11
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
