"""Run directories: created fresh, or reopened with ``resume``; never overwritten silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"


class WorkflowError(RuntimeError):
    """A run that cannot go on (bad input, a NaN loss...): the message says what to do."""


class RunDirError(WorkflowError):
    """The run directory exists without ``--resume``, or ``--resume`` finds nothing."""


def prepare_run_dir(path: str | Path, resume: bool = False) -> Path:
    """Create ``path`` for a new run, or check it holds a resumable run if ``resume``."""
    path = Path(path)
    if resume:
        if not (path / CHECKPOINT).is_file():
            raise RunDirError(f"cannot resume: {path} holds no {CHECKPOINT} "
                              "(start without --resume)")
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(f"run directory {path} already exists; pass --resume to continue it "
                          "or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path


class JsonlLog:
    """Per-epoch records, one JSON object a line. Reopened for a resume, it keeps only the
    records of epochs the checkpoint covers (a record written after the last checkpoint is
    dropped, then written again)."""

    def __init__(self, path: str | Path, keep_epochs: int = 0) -> None:
        self.path = Path(path)
        kept = []
        if keep_epochs and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line).get("epoch", 0) <= keep_epochs:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path
