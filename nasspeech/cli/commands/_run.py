"""Shared pieces of the workflow commands: config loading and user-facing errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from nasspeech.cli.main import CLIError


def load_config(path: str):
    from nasspeech.config import RunConfig

    return RunConfig.load(path)


@contextlib.contextmanager
def workflow_errors() -> Iterator[None]:
    """Turn expected failures (bad config, run dir, genotype, data) into a clean CLI error."""
    from nasspeech.config import ConfigError
    from nasspeech.data import CorpusError, FeatureError, FoldError
    from nasspeech.extras import MissingExtraError
    from nasspeech.genotype import GenotypeError
    from nasspeech.workflow.rundir import WorkflowError

    try:
        yield
    except (ConfigError, GenotypeError, WorkflowError, CorpusError, FeatureError,
            FoldError, MissingExtraError) as exc:
        raise CLIError(str(exc)) from None
