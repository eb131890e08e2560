"""``--import MODULE`` and a run config's ``imports:`` make a user's ops visible."""

import json
import uuid

import pytest
from tiny_runs import tiny_dict, write_config

from nasspeech.cli.main import main
from nasspeech.config import ConfigError, RunConfig
from nasspeech.registry import REGISTRY

MODULE = '''
from nasspeech import get_op, register_op


@register_op("seq", "{op}")
def renamed_lstm(channels, stride=1):
    """lstm_1 under a user's name (a test op)."""
    return get_op("seq", "lstm_1").build(channels, stride)
'''


def user_module(folder, tag: str) -> tuple[str, str]:
    """Write a module registering a fresh seq op; (module name, op name)."""
    module, op = f"user_ops_{tag}", f"scale_{tag}"
    (folder / f"{module}.py").write_text(MODULE.format(op=op))
    return module, op


def config_with(cache, op: str, **extra) -> dict:
    cfg = tiny_dict(cache, **extra)
    cfg["space"]["components"][1]["ops"] = ["lstm_1", op, "none"]
    return cfg


def genotype_using(op: str) -> dict:
    def cell(first: str, second: str) -> dict:
        return {"nodes": [[{"source": 0, "op": first}, {"source": 1, "op": second}]],
                "concat": [2]}

    return {"schema_version": 1, "space": "tiny", "components": [
        {"name": "cnn", "family": "cnn", "cells": {"reduce": cell("sep_conv_3x3",
                                                                   "skip_connect")}},
        {"name": "seq", "family": "seq", "cells": {"cell": cell(op, "lstm_1")}}]}


def test_train_a_genotype_whose_op_comes_from_an_imported_module(tiny_cache, tmp_path,
                                                                 monkeypatch, capsys):
    module, op = user_module(tmp_path, uuid.uuid4().hex[:8])
    cfg = write_config(tmp_path / "tiny.yaml", config_with(tiny_cache, op))
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps(genotype_using(op)))
    monkeypatch.chdir(tmp_path)
    argv = ["train", str(cfg), "--genotype", str(genotype), "--quiet"]

    assert main([*argv, "--out", "without"]) == 2  # not registered yet
    assert op in capsys.readouterr().err
    assert main([*argv, "--out", "with", "--import", module]) == 0
    assert REGISTRY.get("seq", op).source == f"user:{module}"
    metrics = json.loads((tmp_path / "with" / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and metrics["params"] > 0
    assert op in (tmp_path / "with" / "genotype.json").read_text()


def test_config_imports_are_relative_to_the_config_folder(tiny_cache, tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    tag = uuid.uuid4().hex[:8]
    module, op = user_module(folder, tag)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    with pytest.raises(ConfigError, match=op):
        RunConfig.load(write_config(folder / "plain.yaml", config_with(tiny_cache, op)))
    path = write_config(folder / "run.yaml", config_with(tiny_cache, op, imports=[module]))
    assert op in RunConfig.load(path).space.components[1].ops
    module2, op2 = user_module(folder / "..", tag + "b")  # a .py path, relative to the config
    path = write_config(folder / "file.yaml",
                        config_with(tiny_cache, op2, imports=[f"../{module2}.py"]))
    assert op2 in RunConfig.load(path).space.components[1].ops
