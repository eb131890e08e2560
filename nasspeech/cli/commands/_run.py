"""Shared pieces of the workflow commands: run-directory flags, config loading and
user-facing errors."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from nasspeech.cli.commands._tensorboard import add_tensorboard_flag, tensorboard_config
from nasspeech.cli.main import CLIError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def add_run_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--resume``/``--restart``, ``--threads`` and ``--quiet`` of a command that writes a run
    directory (``what``: what it runs, for the help)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help=f"continue an interrupted {what} in --out (a finished part is "
                           "skipped; changed optimisation settings are accepted)")
    mode.add_argument("--restart", action="store_true",
                      help="delete what --out holds and start over in it")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads of torch (default: the config's threads, else torch's "
                        "choice); results depend slightly on it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_tensorboard_flag(p)


def load_config(path: str, args: argparse.Namespace | None = None) -> Any:
    """The validated run config, with ``--threads`` and ``--tensorboard`` applied (the
    tensorboard package is checked now, before the run starts)."""
    from nasspeech.config import RunConfig

    config = RunConfig.load(path)
    threads = getattr(args, "threads", None)
    if threads is not None:
        config = config.model_copy(update={"threads": threads})
    return tensorboard_config(config, bool(getattr(args, "tensorboard", False)))


def check_fold(config: Any, fold: int, flag: str) -> None:
    """A fold index (given by option ``flag``) that cannot exist fails before the data loads."""
    n = config.data.folds
    if config.data.fold_file is None and not 0 <= fold < n:
        raise CLIError(f"{flag} {fold}: no such fold; data.folds is {n} (folds 0..{n - 1})")


@contextlib.contextmanager
def workflow_errors() -> Iterator[None]:
    """Turn expected failures (bad config, run dir, genotype, data) into a clean CLI error."""
    from nasspeech.config import ConfigError
    from nasspeech.data import CorpusError, FeatureError, FoldError
    from nasspeech.extras import MissingExtraError
    from nasspeech.genotype import GenotypeError
    from nasspeech.workflow.imports import ModuleImportError
    from nasspeech.workflow.rundir import WorkflowError

    try:
        yield
    except (ConfigError, GenotypeError, WorkflowError, CorpusError, FeatureError,
            FoldError, ModuleImportError, MissingExtraError) as exc:
        raise CLIError(str(exc)) from None
