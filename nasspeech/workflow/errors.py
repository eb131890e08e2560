"""The workflow's user-facing errors (the CLI prints them as one line, without a traceback)."""

from __future__ import annotations


class WorkflowError(RuntimeError):
    """A run that cannot go on (bad input, a NaN loss...): the message says what to do."""


class RunDirError(WorkflowError):
    """The run directory cannot be used as asked (exists, locked, not resumable...)."""
