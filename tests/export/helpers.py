"""Tiny retrained run directories for the export tests: a derived model whose genotype uses
every built-in op of both families, and each baseline; trained one epoch on random features
(so BatchNorm statistics and weights are not at their initial values)."""

from __future__ import annotations

from pathlib import Path

import torch

from nasspeech.config import RunConfig
from nasspeech.data.folds import Fold
from nasspeech.genotype import Genotype
from nasspeech.registry import list_ops
from nasspeech.workflow.datasets import RunData

SHAPE = (1, 8, 12)  # 8 MFCCs x 12 frames
CLASSES = ["anger", "happiness", "sadness"]
BASELINES = ("cnn", "cnn_lstm", "cnn_lstm_att")


def builtin_ops(family: str) -> list[str]:
    """The built-in ops a derived genotype can hold (``none`` is no edge, so never in one)."""
    return [op.name for op in list_ops(family) if op.source == "built-in" and not op.is_zero]


def cell(ops: list[str], nodes: int) -> dict:
    """``nodes`` nodes with 2 edges each, cycling through ``ops``."""
    names = [ops[k % len(ops)] for k in range(2 * nodes)]
    return {"nodes": [[{"source": s, "op": names[2 * j + s]} for s in (0, 1)]
                      for j in range(nodes)],
            "concat": list(range(2, 2 + nodes))}


def all_ops_config(cnn_ops: list[str], seq_ops: list[str]) -> tuple[RunConfig, Genotype]:
    cn, sn = (len(cnn_ops) + 1) // 2, (len(seq_ops) + 1) // 2
    config = RunConfig.from_mapping({
        "name": "all-ops", "device": "cpu",
        "space": {"name": "all-ops", "input_shape": list(SHAPE), "num_classes": len(CLASSES),
                  "components": [
                      {"name": "cnn", "family": "cnn", "ops": cnn_ops, "cells": 2, "nodes": cn,
                       "channels": 2, "reductions": [1], "handover": "fold_frequency"},
                      {"name": "seq", "family": "seq", "ops": seq_ops, "cells": 1,
                       "nodes": sn, "channels": 8, "handover": "mean_over_time"}]},
        "train": {"epochs": 1, "batch_size": 6},
        "data": {"features": {"n_mfcc": SHAPE[1], "frames": SHAPE[2], "duration": 0.5,
                              "n_fft": 256, "hop_length": 64, "n_mels": 16}},
    })
    # the reduce cell takes the ops in reverse, so every op also runs at stride 2
    genotype = Genotype.model_validate({"space": "all-ops", "components": [
        {"name": "cnn", "family": "cnn",
         "cells": {"normal": cell(cnn_ops, cn), "reduce": cell(cnn_ops[::-1], cn)}},
        {"name": "seq", "family": "seq", "cells": {"cell": cell(seq_ops, sn)}}]})
    return config, genotype


def random_data(n: int = 12) -> RunData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *SHAPE, generator=g)
    y = torch.arange(n) % len(CLASSES)
    fold = Fold(0, test=list(range(n - 3, n)), search=[], train=list(range(n - 3)),
                test_groups=["s1"], labels=[CLASSES[int(i)] for i in y],
                groups=["s0"] * (n - 3) + ["s1"] * 3)
    return RunData(x, y, list(CLASSES), [fold])


def train_run(out: Path, config: RunConfig, genotype: Genotype | None, model: str) -> Path:
    from nasspeech.workflow.train import run_train

    if model != "searched":  # small baselines
        options = {"conv_channels": 2, "hidden": 6}
        options.update({} if model == "cnn" else {"lstm_units": 4})
        config = config.model_copy(update={"train": config.train.model_copy(
            update={"baseline_options": options})})
    return run_train(config, random_data(), 0, out, genotype=genotype, model_name=model,
                     progress=False).run_dir
