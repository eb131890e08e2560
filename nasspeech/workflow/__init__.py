"""Runs: search, retrain, cross-validate and the demo, with run directories, checkpoints,
seeded data order (exact resume) and the collapse guard."""

from nasspeech.workflow.rundir import RunDirError, WorkflowError

__all__ = ["RunDirError", "WorkflowError"]
