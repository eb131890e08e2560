"""``nasspeech estimate`` / ``plan``: JSON keys, readable errors, profiles."""

from __future__ import annotations

import json

import pytest

from nasspeech.cli.main import main
from nasspeech.memory.profiles import PROFILES, UnknownGpuError, get_profile

CONFIG = """
space:
  input_shape: [1, 8, 8]
  num_classes: 4
  components:
    - {name: cnn, family: cnn, ops: [max_pool_3x3, sep_conv_3x3, skip_connect, none],
       cells: 2, nodes: 2, channels: 4}
search: {batch_size: 4, order: 1}
"""


def test_estimate_json_has_the_documented_keys(tmp_path, capsys) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    assert main(["estimate", str(path), "--json", "--gpu", "t4"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("gpu", "capacity_bytes", "peak_allocated_bytes", "peak_reserved_bytes", "fits",
                "max_batch_size", "breakdown"):
        assert key in data
    assert data["batch_size"] == 4 and data["order"] == 1  # defaults from search:
    assert data["gpu"] == "t4" and data["fits"] is True and data["max_batch_size"] > 4
    cats = data["breakdown"]["by_category"]
    assert {"weights", "saved_activations", "framework_overhead"} <= set(cats)
    assert set(data["breakdown"]["by_op"]) >= {"cnn/sep_conv_3x3", "cnn/max_pool_3x3"}
    assert data["peak_reserved_bytes"] >= data["peak_allocated_bytes"]


def test_unknown_gpu_lists_known_ones(tmp_path, capsys) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    assert main(["estimate", str(path), "--gpu", "a100-41gb"]) == 2
    err = capsys.readouterr().err
    assert "a100-41gb" in err and "a100-40gb" in err and "h100-80gb" in err


def test_invalid_config_names_the_field(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.replace("cells: 2", "cells: 0"))
    assert main(["estimate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "components.0.cells" in err


def test_profiles() -> None:
    assert {"a100-40gb", "a100-80gb", "h100-80gb", "h200", "l4", "v100-16gb", "v100-32gb",
            "rtx4090", "t4"} <= set(PROFILES)
    assert all(p.source for p in PROFILES.values())
    assert get_profile("A100-40GB").capacity_bytes > 40 * 10**9
    assert get_profile("24GiB").capacity_bytes == 24 * 1024**3
    with pytest.raises(UnknownGpuError):
        get_profile("tpu")


def test_plan_ranks_fitting_configurations(tmp_path, capsys) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    # a device too small for the space as given, large enough without sep_conv_3x3
    from nasspeech.memory import estimate
    from nasspeech.space import SearchSpace

    base = estimate(path, 8192, order=1, max_batch=False)
    # even the allocator's free-cache-and-retry path needs the live bytes to fit
    from nasspeech.memory.overheads import CUDA_CONTEXT

    live_need = base.peak_allocated_bytes + CUDA_CONTEXT.value + base.conv_workspace_bytes[1]
    space = SearchSpace.from_file(path)
    fewer_ops = space.with_changes(cnn={"ops": ["max_pool_3x3", "skip_connect", "none"]})
    gpu = f"{live_need - 1024**2}B"
    assert not estimate(path, 8192, gpu, order=1, max_batch=False).fits
    assert estimate(fewer_ops, 8192, gpu, order=1, max_batch=False).fits
    assert main(["plan", str(path), "--gpu", gpu, "--batch-size", "8192", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "rank" in out
    assert "batch size " in out and "drop sep_conv_3x3" in out  # smaller batch, fewer ops


def test_list_gpus_prints_every_profile_with_its_capacity(capsys) -> None:
    assert main(["estimate", "--list-gpus"]) == 0
    out = capsys.readouterr().out
    for p in PROFILES.values():
        line = next(line for line in out.splitlines() if line.startswith(p.name + " "))
        assert f"{p.capacity_bytes:,}" in line and p.source in line
    assert "--gpu 24GiB" in out


def test_capacities_need_a_unit() -> None:
    assert get_profile("512MiB").capacity_bytes == 512 * 1024**2
    assert get_profile("1.5TB").capacity_bytes == 1_500_000_000_000
    assert get_profile(" 24 GB ").capacity_bytes == 24 * 10**9
    with pytest.raises(ValueError, match="no unit"):
        get_profile("25000000000")
