"""A tiny run config on a tiny synthetic corpus (1 x 8 x 8 features, 48 clips, 3 folds):
a search or training epoch takes a fraction of a second. Shared by tests/workflow and
tests/bad_inputs/test_runs.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

TINY: dict[str, Any] = {
    "name": "tiny", "seed": 0, "device": "cpu",
    "space": {
        "name": "tiny", "input_shape": [1, 8, 8], "num_classes": 4,
        "components": [
            {"name": "cnn", "family": "cnn", "cells": 1, "nodes": 1, "channels": 4,
             "ops": ["max_pool_3x3", "sep_conv_3x3", "skip_connect", "none"],
             "handover": "fold_frequency"},
            {"name": "seq", "family": "seq", "cells": 1, "nodes": 1, "channels": 8,
             "ops": ["lstm_1", "skip_connect", "none"], "handover": "mean_over_time"},
        ],
    },
    "search": {"epochs": 2, "batch_size": 64, "order": 1, "lr": 0.05, "lr_min": 0.005,
               "alpha_lr": 0.003},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "lr_min": 0.001},
    "data": {"corpus": "demo", "folds": 3, "group_by": "speaker",
             "features": {"duration": 0.5, "n_mfcc": 8, "frames": 8, "n_fft": 256,
                          "hop_length": 64, "n_mels": 16},
             "demo": {"n_speakers": 6, "clips_per_emotion": 2, "duration": 0.5}},
}


def tiny_dict(cache_dir: str | Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config as a mapping; ``sections`` update its sections (``search={...}``)."""
    cfg = copy.deepcopy(TINY)
    cfg["data"]["cache_dir"] = str(cache_dir)
    for name, update in sections.items():
        if isinstance(cfg.get(name), dict) and isinstance(update, dict):
            cfg[name].update(update)
        else:
            cfg[name] = update
    return cfg


def write_config(path: str | Path, cfg: dict[str, Any]) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg))
    return path


def tiny_config(cache_dir: str | Path, **sections: dict[str, Any]):
    from nasspeech.config import RunConfig

    return RunConfig.model_validate(tiny_dict(cache_dir, **sections))


def tiny_data(config):
    from nasspeech.workflow.datasets import load_run_data

    return load_run_data(config, progress=False)


def probe_calls(monkeypatch, module, name: str, probe):
    """Wrap ``module.name`` so that each call first appends ``probe()`` to the returned list
    (what the state was when a run's body started)."""
    seen: list = []
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        seen.append(probe())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return seen

