"""TensorBoard logging of search and retrain (log.tensorboard / --tensorboard): what the event
files hold, read back with TensorBoard's own reader; a cv run reads as one board; a resume
shows every epoch once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from nasspeech.config import RunConfig
from nasspeech.data.folds import Fold
from nasspeech.observe import TB_DIR, with_tensorboard
from nasspeech.workflow.datasets import RunData

pytest.importorskip("tensorboard", reason="the tensorboard extra (a dev dependency) is missing")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tensorboard.backend.event_processing.plugin_event_multiplexer import (
    EventMultiplexer,
)

SHAPE = (1, 8, 12)
EPOCHS = 3


def tiny_config(tensorboard: bool = True) -> RunConfig:
    config = RunConfig.from_mapping({
        "name": "tb", "device": "cpu",
        "space": {"name": "tb", "input_shape": list(SHAPE), "num_classes": 3, "components": [
            {"name": "cnn", "family": "cnn", "cells": 2, "nodes": 2, "channels": 2, "reductions": [1],
             "ops": ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"],
             "handover": "fold_frequency"},
            {"name": "seq", "family": "seq", "cells": 1, "nodes": 2, "channels": 8,
             "ops": ["lstm_1", "skip_connect", "none"], "handover": "mean_over_time"}]},
        "search": {"epochs": EPOCHS, "batch_size": 8, "order": 1},
        "train": {"epochs": EPOCHS, "batch_size": 8},
        "data": {"features": {"n_mfcc": SHAPE[1], "frames": SHAPE[2]}},
    })
    return with_tensorboard(config, tensorboard)


def random_data(folds: int = 2, per_fold: int = 12) -> RunData:
    g = torch.Generator().manual_seed(0)
    n = folds * per_fold
    x, y = torch.randn(n, *SHAPE, generator=g), torch.arange(n) % 3
    names, splits = ["anger", "happiness", "sadness"], []
    for k in range(folds):
        test = list(range(k * per_fold, (k + 1) * per_fold))
        rest = [i for i in range(n) if i not in test]
        splits.append(Fold(k, test, rest, rest, [f"s{k}"], labels=[names[i] for i in y],
                           groups=[f"s{i // per_fold}" for i in range(n)]))
    return RunData(x, y, names, splits)


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / TB_DIR), size_guidance={"scalars": 0, "images": 0,
                                                                 "tensors": 0})
    return acc.Reload()


def scalar(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def search_and_train(tmp_path_factory):
    from nasspeech.workflow.search import run_search
    from nasspeech.workflow.train import run_train

    tmp = tmp_path_factory.mktemp("tb")
    config, data = tiny_config(), random_data()
    search = run_search(config, data, 0, tmp / "search", progress=False)
    train = run_train(config, data, 0, tmp / "train", genotype=search.genotype,
                      model_name="searched", progress=False)
    return search.run_dir, train.run_dir


def test_search_events_hold_the_log_alphas_and_genotype(search_and_train):
    run = search_and_train[0]
    acc = events(run)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = list(range(1, EPOCHS + 1))
    for tag, key in (("loss/train", "train_loss"), ("accuracy/train", "train_acc"),
                     ("accuracy/val", "val_acc"), ("lr/weights", "lr")):
        got = scalar(acc, tag)
        assert [s for s, _ in got] == steps, tag
        assert [v for _, v in got] == pytest.approx([r[key] for r in log], rel=1e-6), tag
    assert [s for s, _ in scalar(acc, "loss/alpha")] == steps
    assert all(0.0 <= v <= 1.0 for _, v in scalar(acc, "ua/val"))
    alpha_lr = tiny_config().search.alpha_lr
    assert [v for _, v in scalar(acc, "lr/alphas")] == pytest.approx([alpha_lr] * EPOCHS)
    for comp in ("cnn", "seq"):
        shares = [v for _, v in scalar(acc, f"collapse/parameter_free_share/{comp}")]
        assert shares == pytest.approx([r["parameter_free_share"][comp] for r in log])
        assert len(scalar(acc, f"collapse/max_skip_per_cell/{comp}")) == EPOCHS
    # every edge's softmax weight of every op, equal to alpha_history.json
    history = json.loads((run / "alpha_history.json").read_text())
    ops = {"cnn.normal": ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"],
           "cnn.reduce": ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"],
           "seq.cell": ["lstm_1", "skip_connect", "none"]}
    edges = ["node2_from0", "node2_from1", "node3_from0", "node3_from1", "node3_from2"]
    for name, names in ops.items():
        for e, edge in enumerate(edges):
            for o, op in enumerate(names):
                got = [v for _, v in scalar(acc, f"alphas/{name}/{edge}/{op}")]
                assert got == pytest.approx([h[name][e][o] for h in history], abs=1e-7)
        mean = [v for _, v in scalar(acc, f"alpha_mean/{name}/{names[0]}")]
        assert mean == pytest.approx([sum(r[0] for r in h[name]) / 5 for h in history])
    images = acc.Images("genotype")
    assert [i.step for i in images] == steps
    assert all(i.width > 300 and i.height > 100 for i in images)
    layout = acc.Tags()["tensors"]
    assert "custom_scalars__config__" in layout
    assert len(acc.Tensors("genotype/json/text_summary")) == EPOCHS


def test_retrain_events_hold_the_log_and_test_result(search_and_train):
    run = search_and_train[1]
    acc = events(run)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [v for _, v in scalar(acc, "loss/train")] == pytest.approx(
        [r["train_loss"] for r in log], rel=1e-6)
    assert [s for s, _ in scalar(acc, "lr/weights")] == list(range(1, EPOCHS + 1))
    metrics = json.loads((run / "metrics.json").read_text())
    assert scalar(acc, "test/ua") == [(EPOCHS, pytest.approx(metrics["ua"]))]
    assert scalar(acc, "test/wa") == [(EPOCHS, pytest.approx(metrics["wa"]))]


def test_off_by_default_and_not_saved_in_config_yaml(tmp_path):
    from nasspeech.workflow.train import run_train

    config = tiny_config(tensorboard=False)
    assert RunConfig.from_mapping(config.model_dump()).log.tensorboard is False
    run = run_train(config, random_data(), 0, tmp_path / "t", model_name="cnn",
                    progress=False).run_dir
    assert not (run / TB_DIR).exists()
    # the log section is observation only: not part of the saved config (nor of a resume)
    assert "log" not in (run / "config.yaml").read_text()
    assert "log" not in tiny_config().model_dump()


def test_a_cv_run_opens_as_one_board_with_every_fold(tmp_path):
    from nasspeech.workflow.cv import run_cv

    config = tiny_config()
    config = config.model_copy(update={
        "search": config.search.model_copy(update={"epochs": 1}),
        "train": config.train.model_copy(update={"epochs": 1})})
    run_cv(config, random_data(), tmp_path / "cv", baselines=("cnn",), progress=False)
    # what TensorBoard's scalar and image dashboards list for `--logdir cv`
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "cv")).Reload()
    scalars = mux.PluginRunToTagToContent("scalars")
    assert sorted(scalars) == sorted(f"fold_{k}/{part}/{TB_DIR}" for k in (0, 1)
                                     for part in ("search", "train", "cnn"))
    images = mux.PluginRunToTagToContent("images")
    for k in (0, 1):
        tags = scalars[f"fold_{k}/search/{TB_DIR}"]
        assert "alphas/seq.cell/node3_from2/lstm_1" in tags and "loss/train" in tags
        assert "genotype" in images[f"fold_{k}/search/{TB_DIR}"]
        assert "test/ua" in scalars[f"fold_{k}/train/{TB_DIR}"]


def test_resume_shows_every_epoch_once(tmp_path, monkeypatch):
    """Interrupted after epoch 2 was logged but before its checkpoint: the resumed run logs
    epoch 2 again, and TensorBoard shows only the new one."""
    import nasspeech.workflow.search as search_mod

    config, data = tiny_config(), random_data()
    save = search_mod.save_checkpoint

    def crash_at_epoch_2(path, state):
        if state["epoch"] == 2:
            raise KeyboardInterrupt
        return save(path, state)

    monkeypatch.setattr(search_mod, "save_checkpoint", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        search_mod.run_search(config, data, 0, tmp_path / "s", progress=False)
    monkeypatch.setattr(search_mod, "save_checkpoint", save)
    # event files sort by name: creation second, then a per-process counter compared as text
    # ("10" < "9"); a real resume is a later process, here a later second keeps the order
    time.sleep(1.1)
    search_mod.run_search(config, data, 0, tmp_path / "s", resume=True, progress=False)
    acc = events(tmp_path / "s")
    log = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    got = scalar(acc, "loss/train")
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([r["train_loss"] for r in log], rel=1e-6)
    assert [i.step for i in acc.Images("genotype")] == [1, 2, 3]


def test_logging_changes_no_result(search_and_train, tmp_path):
    """The same search without TensorBoard: the same alphas and losses, bit for bit (the
    computation is identical; the logger only reads)."""
    from nasspeech.workflow.search import run_search

    run = run_search(tiny_config(tensorboard=False), random_data(), 0, tmp_path / "off",
                     progress=False).run_dir
    on = search_and_train[0]
    assert (run / "alpha_history.json").read_text() == (on / "alpha_history.json").read_text()
    losses = [[json.loads(line)["train_loss"] for line in (d / "log.jsonl").read_text()
               .splitlines()] for d in (run, on)]
    assert losses[0] == losses[1]
