"""Data-parallel search on torch.distributed (gloo, 2 CPU processes, tiny spaces).

The processes run the bodies in ``dist_helpers.py``; each test starts one group (a few
seconds of process start-up each)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bad_inputs"))

import dist_helpers as H
from tiny_runs import tiny_config, tiny_data, tiny_dict, write_config

from nasspeech.search.distributed import RankEnv, rank_env, shard_bounds
from nasspeech.search.sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from nasspeech.space import SearchSpace

#: float tolerance of a 2-process step against a 1-process step (measured: <= 3e-7)
TOL = 1e-5


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The tiny corpus and its feature cache, made once (the processes only read it)."""
    path = tmp_path_factory.mktemp("tiny-cache")
    tiny_data(tiny_config(path))
    return path


# -- pure helpers ---------------------------------------------------------------------
def test_shards_are_contiguous_cover_the_batch_and_differ_by_at_most_one():
    for n in range(1, 12):
        for world in (1, 2, 3, 5):
            parts = [shard_bounds(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_torchrun_environment_is_read():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1",
           "MASTER_PORT": "29500", "LOCAL_WORLD_SIZE": "2"}
    assert rank_env(env) == RankEnv(1, 2, 1, "10.0.0.1", 29500, 2)
    assert rank_env({}) is None


def test_sync_batchnorm_alone_is_batchnorm_and_reaches_every_batchnorm_of_a_supernet():
    """In one process it computes what nn.BatchNorm2d does (forward, backward, running
    statistics), and converting a supernet leaves no BatchNorm unsynchronised, including
    those a mixed op reaches through its plain list of op bodies."""
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3, affine=True)
    sync = nn.BatchNorm2d(3, affine=True)
    assert convert_sync_batchnorm(sync, lambda ts: list(ts), lambda: True) == 1
    x = (torch.randn(5, 3, 4, 4) * 3 + 2).requires_grad_(True)
    y_ref, y = ref(x), sync(x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g_ref = torch.autograd.grad((y_ref * y_ref.detach()).sum(), x)[0]
    g = torch.autograd.grad((y * y.detach()).sum(), x)[0]
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sync.running_var, ref.running_var)

    space = SearchSpace(**H.SPACES["cnn"])
    net = space.build_supernet()
    convert_sync_batchnorm(net, lambda ts: list(ts), lambda: True)
    seen = []
    hook = nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(type(m)) if isinstance(m, nn.modules.batchnorm._BatchNorm)
        else None)
    try:
        net(torch.randn(2, *space.input_shape))
    finally:
        hook.remove()
    assert seen and all(issubclass(t, SyncBatchNorm) for t in seen)


# -- search steps in 2 processes ------------------------------------------------------
SCENARIOS = [
    # equal to one process: no BatchNorm (seq) or synchronised BatchNorm (cnn); uneven
    # shards (7 = 4 + 3, 5 = 3 + 2) and a batch of 1 (process 1 on a stand-in sample)
    {"name": "seq-o1", "space": "seq", "order": 1, "train": [8, 7, 9], "val": [8, 7, 5]},
    {"name": "seq-o2", "space": "seq", "order": 2, "train": [8, 7, 9], "val": [8, 7, 5]},
    {"name": "seq-exact", "space": "seq", "order": 2, "hvp": "exact", "train": [8, 7],
     "val": [8, 5]},
    {"name": "seq-one", "space": "seq", "order": 2, "train": [1, 8], "val": [1, 3]},
    {"name": "cnn-sync-o1", "space": "cnn", "order": 1, "sync_bn": True, "train": [8, 7],
     "val": [8, 5]},
    {"name": "cnn-sync-o2", "space": "cnn", "order": 2, "sync_bn": True, "train": [8, 7],
     "val": [8, 5]},
    # per-process BatchNorm statistics: identical processes, not equal to one process
    {"name": "cnn-o2", "space": "cnn", "order": 2, "train": [8, 7], "val": [8, 6]},
    # negative control: without the gradient sum the processes drift apart
    {"name": "seq-nosync", "space": "seq", "order": 1, "train": [8, 8], "val": [8, 8],
     "nosync": True},
]
EQUAL = [s["name"] for s in SCENARIOS
         if (s["space"] == "seq" or s.get("sync_bn")) and not s.get("nosync")]


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    out = tmp_path_factory.mktemp("steps")
    results = H.spawn(H.steps, 2, out, SCENARIOS)
    for r in results:
        assert r is not None and "error" not in r, r and r.get("trace")
    return results


@pytest.mark.parametrize("name", [s["name"] for s in SCENARIOS if not s.get("nosync")])
def test_processes_stay_bit_identical(stepped, name):
    r0, r1 = stepped
    assert r0[name]["alphas"] == r1[name]["alphas"]
    assert r0[name]["weights"] == r1[name]["weights"]
    assert r0[name]["genotype"] == r1[name]["genotype"]
    assert r0[name]["checked"] and r1[name]["checked"]


@pytest.mark.parametrize("name", EQUAL)
def test_two_process_steps_equal_one_process_steps(stepped, name):
    got = stepped[0][name]
    assert got["alpha_move"] > 1e-3  # the steps moved the alphas
    assert got["alpha_diff"] < TOL and got["weight_diff"] < TOL and got["loss_diff"] < TOL


def test_per_process_batchnorm_differs_from_one_process(stepped):
    assert stepped[0]["cnn-o2"]["alpha_diff"] > 100 * TOL


def test_the_rank_check_catches_processes_that_drift_apart(stepped):
    r0, r1 = stepped
    assert r0["seq-nosync"]["alphas"] != r1["seq-nosync"]["alphas"]
    assert "differ from process 0's" in r0["seq-nosync"]["checked"]


def test_communication_volume_is_counted(stepped):
    assert stepped[0]["bytes"] == stepped[1]["bytes"] > 0


# -- the workflow: resume with another process count ----------------------------------
def test_resume_with_a_different_process_count(tmp_path, cache):
    """2 processes for epoch 1, then 1 for epoch 2; and 1 process, then 2: both end where an
    uninterrupted one-process search ends (synchronised BatchNorm, order 2)."""
    cache = str(cache)
    search = {"order": 2, "epochs": 2, "batch_size": 16, "sync_batchnorm": True,
              "check_ranks": True}
    config = tiny_config(cache, search=search)
    data = tiny_data(config)
    from nasspeech.workflow.search import run_search

    ref = run_search(config, data, 0, tmp_path / "ref", progress=False)
    run_search(config, data, 0, tmp_path / "one-then-two", progress=False, stop_after=1)
    res = H.spawn(H.search_runs, 2, tmp_path, cache, [
        {"out": str(tmp_path / "two-then-one"), "resume": False, "stop_after": 1,
         "search": search},
        {"out": str(tmp_path / "one-then-two"), "resume": True, "search": search},
        # process 0 refuses a run directory that exists: the other one hears why
        {"out": str(tmp_path / "ref"), "resume": False, "search": search}])
    for r in res:
        assert r is not None and "error" not in r, r and r.get("trace")
    refused = [r.pop(str(tmp_path / "ref"))["error"] for r in res]
    assert refused[0].startswith("RunDirError: run directory") and "already exists" in refused[0]
    assert refused[1] == ("RankFailedError: process 0 stopped before the search started: "
                          + refused[0].removeprefix("RunDirError: "))
    assert res[0] == res[1]  # every process returns the same search
    log = [json.loads(line) for line in (tmp_path / "two-then-one" / "log.jsonl").open()]
    assert log[0]["processes"] == 2 and log[0]["allreduce_bytes"] > 0
    assert not (tmp_path / "two-then-one" / "genotype.json").exists()
    two_one = run_search(config, data, 0, tmp_path / "two-then-one", resume=True,
                         progress=False)
    one_two = res[0][str(tmp_path / "one-then-two")]
    for softmax in (two_one.alpha_history[-1], one_two["softmax"]):
        for key, ref_rows in ref.alpha_history[-1].items():
            torch.testing.assert_close(torch.tensor(softmax[key]), torch.tensor(ref_rows),
                                       atol=1e-5, rtol=1e-4)
    assert one_two["epochs"] == two_one.epochs_run == 2
    assert (tmp_path / "one-then-two" / "genotype.json").is_file()


# -- a failing process ----------------------------------------------------------------
@pytest.mark.parametrize("how", ["raise", "hang"])
def test_a_failed_process_stops_the_group_with_a_clear_message(tmp_path, cache, how):
    timeout = 4.0
    r0, r1 = H.spawn(H.failing_search, 2, tmp_path, str(cache), how, timeout,
                     wait_for=[0] if how == "hang" else None, timeout=60)
    assert "RankFailedError" in r0["error"] and "lost contact" in r0["error"]
    expected = "no answer within the timeout" if how == "hang" else "another process exited"
    assert expected in r0["error"]
    if how == "raise":
        assert "injected failure in process 1" in r1["error"]
        assert r0["seconds"] < timeout  # noticed at once, not after the timeout
    else:
        assert r0["seconds"] < timeout + 20


# -- the command line -----------------------------------------------------------------
def test_cli_nproc_2_end_to_end(tmp_path, cache):
    from table import cli

    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(cache, search={"check_ranks": True}))
    result = cli("search", cfg, "--out", tmp_path / "run", "--nproc", "2", "--quiet")
    assert result.code == 0, result.stderr
    assert "genotype:" in result.stdout
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").open()]
    assert [r["processes"] for r in log] == [2, 2] and log[0]["threads"] == 1
    assert (tmp_path / "run" / "genotype.json").is_file()


def test_cli_reports_the_process_that_failed(tmp_path, cache):
    from table import cli

    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(cache))
    plugin = tmp_path / "fail_in_rank_1.py"
    plugin.write_text("import os\nif os.environ.get('RANK') == '1':\n"
                      "    raise ImportError('process 1 cannot import this')\n")
    result = cli("search", cfg, "--out", tmp_path / "run", "--nproc", "2", "--quiet",
                 "--import", plugin)
    assert result.code == 2
    assert "process 1 of 2 failed" in result.stderr
    assert "process 1 cannot import this" in result.stderr
    assert "Traceback" not in result.stderr
