"""Process bodies for tests/search/test_distributed.py: each runs in one of the processes of
a gloo group that the test starts with :func:`spawn` and writes what it found as JSON."""

from __future__ import annotations

import json
import os
import socket
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from nasspeech.config import SearchConfig
from nasspeech.search.distributed import Group, RankEnv
from nasspeech.search.recipe import build_search
from nasspeech.space import SearchSpace

SPACES: dict[str, dict[str, Any]] = {
    # no BatchNorm anywhere: a 2-process step must equal a 1-process step
    "seq": {"name": "seq", "input_shape": (1, 8, 8), "num_classes": 4, "components": [
        {"name": "seq", "family": "seq", "ops": ["lstm_1", "rnn_1", "skip_connect", "none"],
         "cells": 1, "nodes": 2, "channels": 8}]},
    # BatchNorms in the stem, the preprocessing, the ops and after pooling
    "cnn": {"name": "cnn", "input_shape": (1, 8, 8), "num_classes": 4, "components": [
        {"name": "cnn", "family": "cnn", "ops": ["max_pool_3x3", "sep_conv_3x3",
                                                 "skip_connect", "none"],
         "cells": 2, "nodes": 2, "channels": 4}]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world: int, out: Path, *args: Any, timeout: float = 120.0) -> list[dict]:
    """Run ``fn(rank, world, port, out, *args)`` in ``world`` processes; their JSON results."""
    port = free_port()
    ctx = mp.start_processes(_entry, args=(fn, world, port, str(out), *args), nprocs=world,
                             join=False, start_method="spawn")
    for p in ctx.processes:
        p.join(timeout)
    alive = [p for p in ctx.processes if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"{len(alive)} process(es) still running after {timeout} s"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def _entry(rank: int, fn, world: int, port: int, out: str, *args: Any) -> None:
    torch.set_num_threads(1)
    try:
        result = fn(rank, world, port, Path(out), *args)
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        result = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)  # skip the group's teardown: a failed peer would make it wait


def join(rank: int, world: int, port: int, timeout: float = 60.0) -> Group:
    env = RankEnv(rank, world, rank, "127.0.0.1", port)
    return Group.start(env, torch.device("cpu"), "gloo", timeout_s=timeout)


def batches(space: SearchSpace, sizes: list[int], seed: int = 1) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn((n, *space.input_shape), generator=g),
             torch.randint(0, space.num_classes, (n,), generator=g)) for n in sizes]


def _run_steps(space: SearchSpace, search: SearchConfig, group: Group | None, train, val):
    torch.manual_seed(0)
    model = space.build_supernet()
    recipe = build_search(search, model, group=group)
    losses = [recipe.step(t, v).loss for t, v in zip(train, val)]
    return model, losses


def steps(rank: int, world: int, port: int, out: Path, scenarios: list[dict]) -> dict:
    """Several search steps per scenario, data-parallel; rank 0 repeats them in one process."""
    group = join(rank, world, port)
    found = {}
    for sc in scenarios:
        space = SearchSpace(**SPACES[sc["space"]])
        search = SearchConfig(order=sc["order"], hvp=sc.get("hvp", "finite_difference"),
                              sync_batchnorm=sc.get("sync_bn", False), lr=0.05,
                              alpha_lr=0.01, momentum=0.9)
        train = batches(space, sc["train"], 1)
        val = batches(space, sc["val"], 2)
        model, losses = _run_steps(space, search, group, train, val)
        alphas = list(model.alpha_parameters())
        weights = list(model.weight_parameters())
        group.check_identical({"alphas": alphas, "weights": weights}, sc["name"])
        entry = {"alphas": Group.digest(alphas), "weights": Group.digest(weights),
                 "genotype": model.genotype().to_json(), "losses": losses}
        if rank == 0:
            ref, ref_losses = _run_steps(space, search, None, train, val)
            entry["alpha_diff"] = max(float((a - b).abs().max()) for a, b in
                                      zip(alphas, ref.alpha_parameters()))
            entry["alpha_move"] = max(float((a - b).abs().max()) for a, b in
                                      zip(ref.alpha_parameters(),
                                          space.build_supernet().alpha_parameters()))
            entry["weight_diff"] = max(float((a - b).abs().max()) for a, b in
                                       zip(weights, ref.weight_parameters()))
            entry["loss_diff"] = max(abs(a - b) for a, b in zip(losses, ref_losses))
        found[sc["name"]] = entry
    found["bytes"] = group.bytes_reduced
    return found
