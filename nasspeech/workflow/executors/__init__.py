"""Executors run the jobs of a cross-validation (:mod:`nasspeech.workflow.jobs`):
``serial`` in this process (:mod:`.serial`, the default), ``ray`` as Ray tasks on this machine
or a cluster (:mod:`.ray`, imported only when asked for: Ray is an optional extra)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from tqdm.auto import tqdm

from nasspeech.config import RunConfig
from nasspeech.workflow.jobs import Job, Outcome, Plan


class Executor(Protocol):
    """Runs a :class:`~nasspeech.workflow.jobs.Plan`; ``with executor:`` connects to what it
    runs on (before the run directory is opened) and lets go of it afterwards."""

    name: str

    def prepare(self, config: RunConfig) -> RunConfig:
        """The config the jobs run with (e.g. the threads of a task)."""

    def __enter__(self) -> Executor: ...  # noqa: PYI034 - Self needs Python 3.11

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def run(self, plan: Plan, progress: bool) -> dict[Job, Outcome]:
        """Run every job; the outcome of each (failed ones included, where the executor goes
        on after a failure)."""


def progress_lines(progress: bool) -> Callable[[str], None] | None:
    """Where job state lines go: stderr (beside any progress bars), or nowhere."""
    return (lambda line: tqdm.write(line, file=sys.stderr)) if progress else None
