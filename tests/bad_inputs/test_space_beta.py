"""Bad inputs of PC-DARTS edge normalisation (``edge_normalization``, beta): each a clear error
naming the field or the run directory. ``edge_normalization: true`` without partial channels is
allowed (it is meaningful alone; tests/space/test_edge_normalization.py runs it)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from pydantic import ValidationError

from nasspeech.config import RunConfig
from nasspeech.space import SearchSpace

from .table import Case, check, cli, params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from tiny_runs import tiny_dict, write_config

SPACE = {"name": "tiny", "input_shape": [1, 8, 8], "num_classes": 2, "components": [
    {"name": "cnn", "family": "cnn", "ops": ["sep_conv_3x3", "skip_connect", "none"],
     "cells": 3, "nodes": 2, "channels": 4}]}


def validate(value):
    def run(tmp: Path):
        data = copy.deepcopy(SPACE)
        data["components"][0]["edge_normalization"] = value
        return SearchSpace.model_validate(data)
    return run


def params_cli(value):
    def run(tmp: Path):
        data = copy.deepcopy(SPACE)
        data["components"][0]["edge_normalization"] = value
        return cli("params", write_config(tmp / "space.yaml", data))
    return run


def pc_run(tmp: Path, **cnn) -> dict:
    """The tiny run config with partial channels on its cnn component (beta by default)."""
    cfg = tiny_dict((tmp / "cache").resolve())
    cfg["space"]["components"][0].update(partial_channels=2, **cnn)
    return cfg


def resume_with(tmp: Path, checkpoint_cnn: dict | None, model_cnn: dict):
    """A search run directory whose checkpoint holds a supernet built with ``model_cnn``
    and the config with ``checkpoint_cnn`` (None: as an older nasspeech wrote it, without
    ``edge_normalization``); resumed with the default pc config."""
    import torch

    from nasspeech.workflow.checkpoint import save_checkpoint
    from nasspeech.workflow.lock import LOCK_FILE

    run = tmp / "run"
    run.mkdir()
    (run / LOCK_FILE).touch()
    old = RunConfig.model_validate(pc_run(tmp, **(checkpoint_cnn or {}))).model_dump(mode="json")
    if checkpoint_cnn is None:
        del old["space"]["components"][0]["edge_normalization"]
    torch.manual_seed(0)
    model = RunConfig.model_validate(pc_run(tmp, **model_cnn)).space.build_supernet()
    save_checkpoint(run / "checkpoint.pt", {"kind": "search", "epoch": 1, "fold": 0,
                                            "config": old, "model": model.state_dict()})
    return cli("search", write_config(tmp / "pc.yaml", pc_run(tmp)), "--out", run, "--quiet",
               "--resume")


def plot(history):
    def run(tmp: Path):
        from nasspeech.plots import plot_beta_history

        return plot_beta_history(history, tmp / "betas.png")
    return run


CASES = [
    Case("edge_normalization_string", validate("yes"),
         r"components\.0\.edge_normalization.*valid boolean", ValidationError),
    Case("edge_normalization_int", validate(1),
         r"components\.0\.edge_normalization.*valid boolean", ValidationError),
    Case("edge_normalization_list", validate([True]),
         r"components\.0\.edge_normalization.*valid boolean", ValidationError),
    Case("edge_normalization_cli", params_cli("on"),
         r"nasspeech params: error: .*components\.0\.edge_normalization", exit_code=2),
    Case("resume_with_edge_normalization_changed",
         lambda t: resume_with(t, {"edge_normalization": False}, {"edge_normalization": False}),
         r"cannot resume .*space\.components\.0\.edge_normalization changed since it started"),
    Case("resume_checkpoint_from_before_beta",  # no key in its config, no beta in its model
         lambda t: resume_with(t, None, {"edge_normalization": False}),
         r"cannot resume .*no PC-DARTS edge weights \(beta\) for component 'cnn'.*--restart"),
    Case("plot_empty_beta_history", plot([]), r"beta history is empty", ValueError),
    Case("plot_beta_history_matrix", plot([{"cnn.normal": [[0.5, 0.5]]}]),
         r"alpha set 'cnn\.normal' in epoch 1 must be a non-empty list of edge weights, got "
         r"shape \(1, 2\)", ValueError),
]


@params(CASES)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
