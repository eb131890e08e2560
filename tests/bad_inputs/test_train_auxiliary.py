"""Bad inputs of ``train.auxiliary_weight`` (DARTS's auxiliary head in retraining): each a
clear error naming the field, before any run directory is made (or, on a resume, naming the
run directory); never a traceback or a state-dict mismatch."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from .table import Case, check, cli, params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from test_auxiliary_training import GENOTYPE, aux_dict
from tiny_runs import tiny_dict, write_config


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("aux-cache")


@pytest.fixture(scope="module")
def started(tmp_path_factory, cache) -> dict[float, Path]:
    """Finished one-epoch train runs, with the head (0.4) and without it (0)."""
    tmp = tmp_path_factory.mktemp("aux-started")
    genotype = write_json(tmp / "g.json", GENOTYPE)
    runs = {}
    for weight in (0.4, 0.0):
        cfg = write_config(tmp / f"{weight}.yaml", aux_dict(cache, epochs=1,
                                                             auxiliary_weight=weight))
        runs[weight] = tmp / f"run-{weight}"
        assert cli("train", cfg, "--genotype", genotype, "--out", runs[weight],
                   "--quiet").code == 0
    return runs


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def train(cfg: dict, *flags: str, model: str | None = None):
    """``nasspeech train`` on ``cfg`` (the searched model of GENOTYPE unless ``model``);
    no run directory may appear."""
    def run(tmp: Path):
        path = write_config(tmp / "cfg.yaml", cfg)
        argv = ["--model", model] if model else ["--genotype", write_json(tmp / "g.json",
                                                                          GENOTYPE)]
        result = cli("train", path, *argv, "--out", tmp / "run", "--quiet", *flags)
        assert not (tmp / "run").exists(), "a run directory was made for a bad input"
        return result
    return run


def with_weight(value) -> dict:
    cfg = aux_dict(Path("cache"))
    cfg["train"]["auxiliary_weight"] = value
    return cfg


def seq_only() -> dict:
    cfg = aux_dict(Path("cache"))
    seq = copy.deepcopy(cfg["space"]["components"][1])
    cfg["space"]["components"] = [seq]
    return cfg


#: the module's cache and started runs, for the resume cases (set by ``test_bad_input``)
SHARED: dict = {}


def resume(started_with: float, now: float):
    """Resume a finished one-epoch run for a second epoch with another weight."""
    def run(tmp: Path):
        shutil.copytree(SHARED["runs"][started_with], tmp / "run")
        cfg = write_config(tmp / "cfg.yaml", aux_dict(SHARED["cache"], epochs=2,
                                                      auxiliary_weight=now))
        return cli("train", cfg, "--genotype", write_json(tmp / "g.json", GENOTYPE), "--out",
                   tmp / "run", "--quiet", "--resume")
    return run


def step_without_head(tmp: Path):
    from nasspeech.config import RunConfig
    from nasspeech.genotype import Genotype
    from nasspeech.search import weight_step

    config = RunConfig.model_validate(aux_dict(tmp / "cache"))
    model = config.space.derive(Genotype.model_validate(GENOTYPE))
    opt = torch.optim.SGD(model.parameters(), 0.1)
    batch = (torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))
    return weight_step(model, opt, batch, aux_weight=0.4)


CASES = [
    Case("weight_true", train(with_weight(True)),
         r"train\.auxiliary_weight: Input should be a valid number \(got True\)"),
    Case("weight_string", train(with_weight("0.4")),
         r"train\.auxiliary_weight: Input should be a valid number"),
    Case("weight_negative", train(with_weight(-0.4)),
         r"train\.auxiliary_weight: Input should be greater than or equal to 0"),
    Case("maps_too_small", train(tiny_dict(Path("cache"), train={"auxiliary_weight": 0.4})),
         r"train\.auxiliary_weight 0\.4: the auxiliary head after cell 0 of component 'cnn' "
         r"needs feature maps of at least 8x8, they are 4x4\W+set it to 0"),
    Case("no_cnn_component", train(seq_only()),
         r"train\.auxiliary_weight 0\.4: the auxiliary head needs a cnn component"),
    Case("baseline_model", train(aux_dict(Path("cache")), model="cnn"),
         r"train\.auxiliary_weight 0\.4: baseline 'cnn' has no place for DARTS's auxiliary head"),
    Case("resume_turning_the_head_off", resume(0.4, 0.0),
         r"cannot resume .*run: it was started with the auxiliary head, and "
         r"train\.auxiliary_weight is now 0 .*--restart"),
    Case("resume_turning_the_head_on", resume(0.0, 0.4),
         r"cannot resume .*run: it was started without the auxiliary head, and "
         r"train\.auxiliary_weight is now above 0"),
    Case("weight_step_without_head", step_without_head, r"left no auxiliary logits",
         ValueError),
]


@params(CASES)
def test_bad_input(case: Case, tmp_path: Path, started, cache) -> None:
    SHARED.update(runs=started, cache=cache)
    check(case, tmp_path)
