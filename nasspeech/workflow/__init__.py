"""Runs: search, retrain, cross-validate and the demo, with run directories, checkpoints,
seeded data order (exact resume) and the collapse guard."""

from nasspeech.workflow.errors import RunDirError, WorkflowError

__all__ = ["RunDirError", "WorkflowError"]
