"""``nasspeech params``: parameter counts of derived models and supernets, as the examples
tell users to run it."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch

from nasspeech.cli.main import main
from nasspeech.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]


def run_json(capsys, *argv: str) -> dict:
    assert main(["params", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_command_in_the_darts_example_runs_and_gives_the_darts_count(capsys, monkeypatch):
    """examples/darts_cifar10.yaml names a command in its comment: it runs as written and
    prints the count the comment states (the DARTS code's convention, no auxiliary head)."""
    text = (ROOT / "examples/darts_cifar10.yaml").read_text()
    command = re.search(r"#\s+(nasspeech params .*?)\n(?!#\s+--)", text.replace("\\\n#", ""),
                        re.DOTALL).group(1)
    argv = shlex.split(command)[2:]
    monkeypatch.chdir(ROOT)
    assert main(["params", *argv]) == 0
    out = capsys.readouterr().out
    assert re.search(r"total\s+3,349,342", out)
    assert "3,349,342" in text and "no BatchNorm" in out
    result = run_json(capsys, *argv, "--auxiliary")
    assert result["total"] == 3_349_342 and result["auxiliary"] == 476_426
    assert result["overrides"] == {"cnn": {"channels": 36, "cells": 20}}


def test_supernet_count_matches_the_built_supernet(capsys):
    path = ROOT / "examples/demo.yaml"  # a run config: its space section is counted
    result = run_json(capsys, str(path))
    net = SearchSpace.from_file(path).build_supernet()
    alphas = sum(a.numel() for a in net.alpha_parameters())
    assert result["model"] == "supernet" and result["alphas"] == alphas
    assert result["total"] == sum(p.numel() for p in net.parameters()) - alphas
    assert set(result["parts"]) == {"cnn", "seq", "classifier"}


def test_run_config_overrides_apply_to_the_derived_model(tmp_path, capsys):
    import yaml

    cfg = yaml.safe_load((ROOT / "examples/demo.yaml").read_text())
    cfg["train"]["overrides"] = {"cnn": {"cells": 4}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    space = SearchSpace.model_validate(cfg["space"])
    genotype = space.build_supernet().genotype()
    genotype.save(tmp_path / "g.json")
    result = run_json(capsys, str(tmp_path / "run.yaml"), "--genotype", str(tmp_path / "g.json"),
                      "--override", "seq.channels=8")
    assert result["overrides"] == {"cnn": {"cells": 4}, "seq": {"channels": 8}}
    model = space.derive(genotype, overrides=result["overrides"])
    assert result["total"] == sum(p.numel() for p in model.parameters())
    assert torch.isfinite(model(torch.randn(2, 1, 32, 32))).all()
