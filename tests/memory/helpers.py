"""Small spaces and comparison helpers for the memory tests."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from nasspeech.config import SearchConfig
from nasspeech.memory.records import Trace
from nasspeech.memory.setup import build_fake_supernet, make_setup
from nasspeech.memory.trace import trace_step
from nasspeech.space.config import SearchSpace


def cnn_space(ops=("max_pool_3x3", "sep_conv_3x3", "skip_connect", "none"), cells=2, nodes=2,
              channels=4, size=16) -> SearchSpace:
    return SearchSpace.model_validate({
        "input_shape": [1, size, size], "num_classes": 4,
        "components": [{"name": "cnn", "family": "cnn", "ops": list(ops), "cells": cells,
                        "nodes": nodes, "channels": channels}],
    })


def lstm_space(ops=("memtest_lstm_1", "memtest_lstm_2", "memtest_skip"),
               cells=1, nodes=1) -> SearchSpace:
    from seq_ops import register

    register()
    return SearchSpace.model_validate({
        "input_shape": [2, 16, 8], "num_classes": 4,
        "components": [
            {"name": "cnn", "family": "cnn", "ops": ["sep_conv_3x3", "skip_connect"],
             "cells": 1, "nodes": 1, "channels": 2, "reductions": [], "handover": "fold_frequency"},
            {"name": "seq", "family": "seq", "ops": list(ops), "cells": cells, "nodes": nodes,
             "channels": 8, "handover": "mean_over_time"},
        ],
    })


def fake_trace(space: SearchSpace, batch: int, order: int, target: str = "cpu") -> Trace:
    fake_mode = FakeTensorMode()
    model = build_fake_supernet(space, fake_mode)
    with fake_mode:
        setup = make_setup(model, space, batch, SearchConfig(order=order),
                           foreach=True if target == "cuda" else None)
    return trace_step(setup, fake_mode, target=target)


def real_setup(space: SearchSpace, batch: int, order: int):
    torch.manual_seed(0)
    return make_setup(space.build_supernet(), space, batch, SearchConfig(order=order))


def canonical(sequence: list[int]) -> list[int]:
    """Sort inside each run of consecutive allocations (one op's outputs: CPU kernels may
    create them in another order than they return them) and of consecutive frees."""
    out: list[int] = []
    run: list[int] = []
    for v in sequence:
        if run and (v > 0) != (run[0] > 0):
            out += sorted(run)
            run = []
        run.append(v)
    return out + sorted(run)
