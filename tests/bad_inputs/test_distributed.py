"""Bad inputs of the data-parallel search (``--nproc``, torchrun's environment, the group)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nasspeech.search.distributed import (
    DistributedSetupError,
    Group,
    check_world,
    choose_backend,
    rank_env,
)

from .table import Case, check, cli, params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from tiny_runs import tiny_dict, write_config

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TORCHRUN = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500"}


def _config(tmp: Path, **search: Any) -> Path:
    data = tiny_dict((tmp / "cache").resolve())
    data["search"] = {**data["search"], **search}
    return write_config(tmp / "tiny.yaml", data)


def _search(*flags: str, env: dict[str, str] | None = None, **search: Any
            ) -> Callable[[Path], Any]:
    """``nasspeech search`` of the tiny config with ``flags``, under ``env`` (torchrun's
    variables replaced by these)."""

    def run(tmp: Path) -> Any:
        saved = {k: os.environ.pop(k, None) for k in ENV}
        os.environ.update(env or {})
        try:
            return cli("search", _config(tmp, **search), "--out", tmp / "run", *flags)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None)
                if v is not None:
                    os.environ[k] = v

    return run


def _sharded_empty(_tmp: Path) -> Any:
    group = Group(0, 2, torch.device("cpu"), "gloo", 60.0)  # not started: no collective
    with group.sharded((torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))):
        pass


def _unsharded_loss(_tmp: Path) -> Any:
    group = Group(0, 2, torch.device("cpu"), "gloo", 60.0)
    return group.loss(torch.nn.functional.cross_entropy)(torch.zeros(2, 4),
                                                         torch.zeros(2, dtype=torch.long))


CASES = [
    Case("nproc-0", _search("--nproc", "0"), match=r"--nproc: .*expected a number >= 1"),
    Case("nproc-not-a-number", _search("--nproc", "two"), match=r"expected a whole number"),
    Case("batch-smaller-than-nproc", _search("--nproc", "4", batch_size=2),
         match=r"search\.batch_size 2 is smaller than the 4 processes"),
    Case("nccl-without-cuda", _search("--nproc", "2", "--backend", "nccl"),
         match=r"backend nccl needs CUDA"),
    Case("backend-unknown", _search("--nproc", "2", "--backend", "mpi"),
         match=r"--backend: invalid choice: 'mpi'"),
    Case("dist-timeout-0", _search("--nproc", "2", "--dist-timeout", "0"),
         match=r"expected a number of seconds > 0"),
    Case("torchrun-env-incomplete", _search(env={"RANK": "0", "WORLD_SIZE": "2"}),
         match=r"incomplete torch\.distributed environment: RANK, WORLD_SIZE set but "
               r"MASTER_ADDR, MASTER_PORT missing"),
    Case("torchrun-rank-out-of-range", _search(env={**TORCHRUN, "RANK": "2"}),
         match=r"RANK=2 is not 0\.\.1"),
    Case("torchrun-world-size-text", _search(env={**TORCHRUN, "WORLD_SIZE": "two"}),
         match=r"WORLD_SIZE='two' is not a whole number"),
    Case("torchrun-port-out-of-range", _search(env={**TORCHRUN, "MASTER_PORT": "70000"}),
         match=r"MASTER_PORT=70000 is not 1\.\.65535"),
    Case("nproc-under-torchrun", _search("--nproc", "2", env=TORCHRUN),
         match=r"--nproc 2: this process already belongs to a group .*leave --nproc out"),
    Case("config-sync-batchnorm-not-bool", _search(sync_batchnorm="sometimes"),
         match=r"search\.sync_batchnorm"),
    Case("config-check-ranks-not-bool", _search(check_ranks=[1]), match=r"search\.check_ranks"),
    Case("estimate-batch-smaller-than-nproc",
         lambda tmp: cli("estimate", _config(tmp), "--batch-size", "2", "--nproc", "4"),
         match=r"--nproc 4: the batch size 2 is smaller than the 4 processes"),
    Case("plan-nproc-0", lambda tmp: cli("plan", _config(tmp), "--gpu", "t4", "--nproc", "0"),
         match=r"--nproc must be >= 1, got 0"),
    Case("api-env-partial", lambda tmp: rank_env({"LOCAL_RANK": "0"}),
         match=r"LOCAL_RANK set but RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT missing",
         error=DistributedSetupError),
    Case("api-env-empty-addr", lambda tmp: rank_env({**TORCHRUN, "MASTER_ADDR": " "}),
         match=r"MASTER_ADDR is empty", error=DistributedSetupError),
    Case("api-backend-unknown", lambda tmp: choose_backend("mpi", torch.device("cpu")),
         match=r"backend must be one of auto, gloo, nccl, got 'mpi'",
         error=DistributedSetupError),
    Case("api-batch-smaller-than-world", lambda tmp: check_world(3, 4),
         match=r"search\.batch_size 3 is smaller than the 4 processes",
         error=DistributedSetupError),
    Case("api-shard-empty-batch", _sharded_empty, match=r"an empty batch cannot be sharded",
         error=ValueError),
    Case("api-loss-on-unsharded-batch", _unsharded_loss,
         match=r"a search loss on a batch that Group\.sharded did not hand out",
         error=RuntimeError),
]


@params(CASES)
def test_bad_distributed_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
