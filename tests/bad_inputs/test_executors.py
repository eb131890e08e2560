"""Bad inputs of ``nasspeech cv --executor``: Ray missing, a bad or dead ``--address``, options
out of range or given to the serial executor, resources the Ray cluster does not have. Each
case: one bad input, one clear error, and no run directory left behind."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nasspeech.extras import MissingExtraError
from nasspeech.workflow.executors.ray import ExecutorError, RayExecutor

from .table import Case, check, cli, params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from tiny_runs import tiny_dict, write_config


@pytest.fixture(scope="module")
def executors_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executors-cache")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@contextlib.contextmanager
def without_ray() -> Iterator[None]:
    """``import ray`` fails meanwhile, as where Ray is not installed."""
    saved = {k: m for k, m in sys.modules.items() if k == "ray" or k.startswith("ray.")}
    sys.modules["ray"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules["ray"]
        sys.modules.update(saved)


def cv(tmp: Path, *flags: str, **sections):
    """``nasspeech cv`` of a tiny config; no run directory may be left behind."""
    cfg = write_config(tmp / "tiny.yaml", tiny_dict((tmp / "cache").resolve(), **sections))
    result = cli("cv", cfg, "--out", tmp / "run", "--quiet", "--folds", "0", *flags)
    assert not (tmp / "run").exists(), "a failed start left a run directory"
    return result


def no_ray_cli(tmp: Path):
    with without_ray():
        return cv(tmp, "--executor", "ray")


def no_ray_api(tmp: Path):
    with without_ray():
        return RayExecutor()


CASES = [
    Case("ray-not-installed", no_ray_cli,
         r"--executor ray needs the 'ray' package, which is not installed; install it with: "
         r"pip install 'nasspeech\[ray\]'"),
    Case("ray-not-installed-api", no_ray_api, r"pip install 'nasspeech\[ray\]'",
         error=MissingExtraError),
    Case("executor-unknown", lambda t: cv(t, "--executor", "dask"),
         r"argument --executor: invalid choice: 'dask'"),
    Case("address-malformed", lambda t: cv(t, "--executor", "ray", "--address", "http://h:8265"),
         r"--address 'http://h:8265': expected auto, HOST:PORT or ray://HOST:PORT"),
    Case("address-port-out-of-range",
         lambda t: cv(t, "--executor", "ray", "--address", "head:70000"),
         r"--address 'head:70000': expected auto, HOST:PORT"),
    Case("address-nobody-listens",
         lambda t: cv(t, "--executor", "ray", "--address", "127.0.0.1:1"),
         r"--address 127\.0\.0\.1:1: no Ray cluster answers at 127\.0\.0\.1:1 \(Connection "
         r"refused\); start one with `ray start --head`"),
    Case("ray-option-with-serial", lambda t: cv(t, "--max-parallel", "2"),
         r"--max-parallel applies only to --executor ray"),
    Case("ray-options-with-serial", lambda t: cv(t, "--address", "auto", "--gpus-per-task", "1"),
         r"--address, --gpus-per-task apply only to --executor ray"),
    Case("max-parallel-0", lambda t: cv(t, "--executor", "ray", "--max-parallel", "0"),
         r"argument --max-parallel: expected a number >= 1, got 0"),
    Case("cpus-per-task-0", lambda t: cv(t, "--executor", "ray", "--cpus-per-task", "0"),
         r"argument --cpus-per-task: expected a number >= 1, got 0"),
    Case("gpus-per-task-negative",
         lambda t: cv(t, "--executor", "ray", "--gpus-per-task", "-1"),
         r"argument --gpus-per-task: expected a number >= 0, got -1"),
    Case("gpus-per-task-nan", lambda t: cv(t, "--executor", "ray", "--gpus-per-task", "nan"),
         r"argument --gpus-per-task: expected a number >= 0, got nan"),
    Case("max-parallel-0-api", lambda t: RayExecutor(max_parallel=0),
         r"--max-parallel must be >= 1, got 0", error=ExecutorError),
    Case("gpus-negative-api", lambda t: RayExecutor(gpus_per_task=-0.5),
         r"--gpus-per-task must be >= 0", error=ExecutorError),
]

#: Cases that need a running Ray (one local Ray with 2 CPUs and no GPU serves them all).
RAY_CASES = [
    Case("gpus-per-task-without-gpus",
         lambda t: cv(t, "--executor", "ray", "--gpus-per-task", "1"),
         r"--gpus-per-task 1: no node of the Ray cluster has that many GPUs \(the cluster has "
         r"0\); use --gpus-per-task 0"),
    Case("cpus-per-task-above-any-node",
         lambda t: cv(t, "--executor", "ray", "--cpus-per-task", "64"),
         r"a task needs 64 CPUs .* the largest node of the Ray cluster has 2; lower "
         r"--cpus-per-task"),
    Case("config-threads-above-any-node", lambda t: cv(t, "--executor", "ray", "--threads", "8"),
         r"a task needs 8 CPUs"),
]


@params(CASES)
def test_executors_bad_input(case: Case, tmp_path: Path, executors_cache: Path) -> None:
    (tmp_path / "cache").symlink_to(executors_cache)
    check(case, tmp_path)


@params(RAY_CASES)
def test_executors_bad_input_on_a_running_ray(case: Case, tmp_path: Path, executors_cache: Path,
                                              local_ray) -> None:
    (tmp_path / "cache").symlink_to(executors_cache)
    check(case, tmp_path)
