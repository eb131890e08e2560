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
from nasspeech.search.distributed import Group, RankEnv, RankMismatchError
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


def spawn(fn, world: int, out: Path, *args: Any, timeout: float = 120.0,
          wait_for: list[int] | None = None) -> list[dict | None]:
    """Run ``fn(rank, world, port, out, *args)`` in ``world`` processes; their JSON results.

    ``wait_for``: the ranks that must finish (the others are killed then; their result is
    ``None``)."""
    port = free_port()
    ctx = mp.start_processes(_entry, args=(fn, world, port, str(out), *args), nprocs=world,
                             join=False, start_method="spawn")
    waited = range(world) if wait_for is None else wait_for
    for r in waited:
        ctx.processes[r].join(timeout)
    stuck = [r for r in waited if ctx.processes[r].is_alive()]
    for p in ctx.processes:
        if p.is_alive():
            p.kill()
            p.join()
    assert not stuck, f"process(es) {stuck} still running after {timeout} s"
    return [json.loads(f.read_text()) if (f := out / f"rank{r}.json").is_file() else None
            for r in range(world)]


def _entry(rank: int, fn, world: int, port: int, out: str, *args: Any) -> None:
    # one thread per process, as a data-parallel search on the CPU uses by default (two
    # processes of NASSPEECH_TEST_THREADS=2 each oversubscribe a 2-core machine many times over)
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


def _run_steps(space: SearchSpace, search: SearchConfig, group: Group | None, train, val,
               nosync: bool = False):
    torch.manual_seed(0)
    model = space.build_supernet()
    recipe = build_search(search, model, group=group)
    if nosync:  # what DDP-less code without the hook would do
        recipe.architect.grad_sync = None
        recipe.architect._sync = lambda grads: grads
    losses = [recipe.step(t, v).loss for t, v in zip(train, val)]
    return model, losses


def _max_diff(a, b) -> float:
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b))


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
        model, losses = _run_steps(space, search, group, train, val, sc.get("nosync", False))
        alphas = list(model.alpha_parameters())
        weights = list(model.weight_parameters())
        try:
            group.check_identical({"alphas": alphas, "weights": weights}, sc["name"])
            checked: bool | str = True
        except RankMismatchError as exc:
            checked = str(exc)
        entry = {"alphas": Group.digest(alphas), "weights": Group.digest(weights),
                 "genotype": model.genotype().to_json(), "losses": losses,
                 "checked": checked}
        if rank == 0:
            ref, ref_losses = _run_steps(space, search, None, train, val)
            entry["alpha_diff"] = _max_diff(alphas, ref.alpha_parameters())
            entry["alpha_move"] = _max_diff(ref.alpha_parameters(),
                                            space.build_supernet().alpha_parameters())
            entry["weight_diff"] = _max_diff(weights, ref.weight_parameters())
            entry["loss_diff"] = max(abs(a - b) for a, b in zip(losses, ref_losses))
        found[sc["name"]] = entry
    found["bytes"] = group.bytes_reduced
    return found


def search_runs(rank: int, world: int, port: int, out: Path, cache: str,
                runs: list[dict]) -> dict:
    """``run_search`` of the tiny config in this group, for each of ``runs`` (out dir, resume,
    stop_after); the alphas found."""
    from tiny_runs import tiny_config, tiny_data

    from nasspeech.workflow.search import run_search

    group = join(rank, world, port)
    found = {}
    for run in runs:
        config = tiny_config(cache, search=run["search"])
        try:
            res = run_search(config, tiny_data(config), 0, run["out"], resume=run["resume"],
                             progress=False, stop_after=run.get("stop_after"), group=group)
        except Exception as exc:  # noqa: BLE001 - the test checks it
            found[run["out"]] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        found[run["out"]] = {"genotype": res.genotype.to_json(), "epochs": res.epochs_run,
                             "softmax": res.alpha_history[-1]}
    return found


def failing_search(rank: int, world: int, port: int, out: Path, cache: str, how: str,
                   timeout: float) -> dict:
    """Process 1 fails in its first weight step (``raise``) or stops answering (``hang``);
    process 0 reports what it got and how long it took."""
    import time

    from tiny_runs import tiny_config, tiny_data

    from nasspeech.search import loop
    from nasspeech.workflow.search import run_search

    group = join(rank, world, port, timeout)
    if rank == 1:
        def broken(*args: Any, **kwargs: Any):
            if how == "hang":
                time.sleep(120)
            raise RuntimeError("injected failure in process 1")

        loop.weight_step = broken
    config = tiny_config(cache)
    data = tiny_data(config)
    t0 = time.monotonic()
    try:
        run_search(config, data, 0, out / "run", progress=False, group=group)
    except Exception as exc:  # noqa: BLE001 - the test checks it
        return {"error": f"{type(exc).__name__}: {exc}", "seconds": time.monotonic() - t0}
    return {"seconds": time.monotonic() - t0}
