"""Bad inputs of the search settings owned by nasspeech.search (the Hessian-vector product,
recomputed depthwise outputs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nasspeech.search import Architect
from nasspeech.space import SearchSpace

from .table import Case, check, cli, params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from tiny_runs import tiny_dict, write_config


def _config(tmp: Path, **search) -> Path:
    data = tiny_dict((tmp / "cache").resolve())
    data["search"] = {**data.get("search", {}), **search}
    return write_config(tmp / "tiny.yaml", data)


def _architect(hvp: str) -> Architect:
    space = SearchSpace(name="t", input_shape=(1, 8, 8), num_classes=2, components=[
        dict(name="cnn", family="cnn", ops=["skip_connect", "none"], cells=1, nodes=1,
             channels=8)])
    return Architect(space.build_supernet(), order=2, hvp=hvp)


CASES = [
    Case("config-hvp-unknown",
         lambda tmp: cli("search", _config(tmp, hvp="newton"), "--out", tmp / "run"),
         match=r"search\.hvp"),
    Case("api-hvp-unknown", lambda tmp: _architect("fd"),
         match="hvp must be one of finite_difference, exact, got 'fd'", error=ValueError),
    Case("config-recompute-not-bool",
         lambda tmp: cli("search", _config(tmp, recompute_depthwise="sometimes"), "--out",
                         tmp / "run"),
         match=r"search\.recompute_depthwise: Input should be a valid boolean"),
]


@params(CASES)
def test_bad_search_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
