"""Fixtures of the export tests (built with :mod:`tests.export.helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import BASELINES, all_ops_config, builtin_ops, train_run


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """name -> train run directory: ``searched`` (every built-in op) and each baseline."""
    tmp = tmp_path_factory.mktemp("runs")
    config, genotype = all_ops_config(builtin_ops("cnn"), builtin_ops("seq"))
    runs = {"searched": train_run(tmp / "searched", config, genotype, "searched")}
    for name in BASELINES:
        runs[name] = train_run(tmp / name, config, None, name)
    return runs
