"""``train.drop_path`` follows DARTS's schedule: 0 in the first epoch, growing linearly
towards the configured probability (``drop_path * epoch / epochs``)."""

from __future__ import annotations

import json

import pytest
from test_auxiliary_training import aux_dict, genotype

from nasspeech.config import RunConfig


def test_drop_path_grows_linearly_over_the_epochs(tmp_path, monkeypatch):
    from nasspeech.space.derived import DerivedModel
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.train import run_train

    seen: list[float] = []
    original = DerivedModel.set_drop_path

    def spy(self, prob):
        seen.append(prob)
        original(self, prob)

    monkeypatch.setattr(DerivedModel, "set_drop_path", spy)
    config = RunConfig.model_validate(
        aux_dict(tmp_path / "cache", epochs=3, drop_path=0.3, auxiliary_weight=0.0))
    data = load_run_data(config, progress=False)
    res = run_train(config, data, 0, tmp_path / "run", genotype=genotype(),
                    model_name="searched", progress=False)
    logged = [json.loads(line)["drop_path"]
              for line in (res.run_dir / "log.jsonl").read_text().splitlines()
              if "epoch" in json.loads(line) and "drop_path" in json.loads(line)]
    assert logged == pytest.approx([0.0, 0.1, 0.2])
    assert seen[-3:] == pytest.approx([0.0, 0.1, 0.2])
