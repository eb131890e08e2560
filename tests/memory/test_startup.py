"""``nasspeech estimate`` in a new process: it loads no library it does not use, reads its
config once, and the fork-when-idle path backs off on a busy machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cnn_space

from nasspeech.config import SearchConfig
from nasspeech.memory import fork
from nasspeech.memory.fork import BackgroundTraces, fork_map, fork_workers, idle_cores
from nasspeech.memory.session import StepTracerSession

ROOT = Path(__file__).resolve().parents[2]
#: what the estimate command has no use for (the data pipeline, plots, export)
UNUSED = ("librosa", "soundfile", "scipy", "matplotlib", "networkx", "onnx", "tensorboard",
          "nasspeech.data.synthetic", "nasspeech.data.features", "nasspeech.export.exporter",
          "nasspeech.plots")
CONFIG = """
space:
  input_shape: [1, 8, 8]
  num_classes: 4
  components:
    - {name: cnn, family: cnn, ops: [max_pool_3x3, sep_conv_3x3, skip_connect], cells: 1,
       nodes: 1, channels: 4}
search: {batch_size: 4, order: 1}
"""
PROBE = """
import builtins, json, sys
from pathlib import Path
from nasspeech.space import loading
reads = []
original = loading.read_text
def read_text(path, *args, **kwargs):
    reads.append(str(path))
    return original(path, *args, **kwargs)
loading.read_text = read_text
from nasspeech.cli.main import main
code = main(["estimate", sys.argv[1], "--no-max-batch", "--json"])
print(json.dumps({"code": code, "modules": sorted(sys.modules), "reads": reads}))
"""


def test_estimate_command_loads_only_what_it_uses(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(config)], capture_output=True,
                         text=True, check=True, env=env, cwd=tmp_path).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["code"] == 0
    loaded = [m for m in UNUSED if m in result["modules"]]
    assert not loaded, f"nasspeech estimate imported {loaded}"
    assert result["reads"] == [str(config)]  # the config is read once


def test_idle_cores_falls_back_on_the_load_average(monkeypatch) -> None:
    """Too short an interval to measure idle time: the load average decides (a busy machine
    used to count as one idle core then)."""
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    assert idle_cores(fork.cpu_times()) < 0
    assert idle_cores(None) < 0
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert idle_cores(None) == cores


def test_no_fork_on_a_busy_machine(monkeypatch) -> None:
    import nasspeech.memory.session as session_module

    busy = lambda _since: 0.1  # noqa: E731
    monkeypatch.setattr(fork, "idle_cores", busy)
    monkeypatch.setattr(session_module, "idle_cores", busy)  # its own imported name
    session = StepTracerSession(cnn_space(), SearchConfig(order=1))
    assert session.trace_in_background([2]) is None  # the session's own check
    assert fork_workers(None, None) == 1
    assert fork_workers(None, False) == 1


@pytest.mark.skipif(not fork.can_fork(), reason="needs fork (Linux)")
def test_a_background_trace_that_comes_too_late_is_traced_here() -> None:
    session = StepTracerSession(cnn_space(), SearchConfig(order=1))
    background = BackgroundTraces(session, [(2, None)])
    background.patience = 0.0  # a machine so busy that nothing comes in time
    assert background.get(2) is None
    assert background.pid is None and 2 not in background.jobs  # stopped and reaped
    assert session.trace(2).batch_size == 2  # the caller traces it itself


@pytest.mark.skipif(not fork.can_fork(), reason="needs fork (Linux)")
def test_fork_map_shares_jobs_and_keeps_every_result() -> None:
    items = list(range(7))
    results = sorted(fork_map(lambda x: 1 / x, items, workers=3))
    assert [i for i, _, _ in results] == items
    assert results[0][1:] == (False, "ZeroDivisionError: division by zero")
    assert [v for _, ok, v in results[1:]] == [1 / x for x in items[1:]]
    assert sorted(fork_map(lambda x: x * x, items, workers=1)) == \
        [(x, True, x * x) for x in items]
