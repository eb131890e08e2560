"""Bad inputs to the memory estimator (``nasspeech estimate`` / ``plan``, ``get_profile``), and
a space too large for host memory, which the meta tracer must trace without allocating it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasspeech.memory.profiles import get_profile
from nasspeech.space.config import SearchSpace

from .table import Case, check, cli, params

CONFIG = """
space:
  input_shape: [1, 8, 8]
  num_classes: 4
  components:
    - {name: cnn, family: cnn, ops: [max_pool_3x3, skip_connect], cells: 1, nodes: 1,
       channels: 4}
search: {batch_size: 4, order: 1}
"""


def _config(tmp_path: Path, old: str = "", new: str = "") -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG.replace(old, new) if old else CONFIG)
    return path


def _estimate(*extra: str, old: str = "", new: str = ""):
    return lambda tmp: cli("estimate", _config(tmp, old, new), "--no-max-batch", *extra)


# a pydantic dump carries a line 'For further information visit https://errors.pydantic.dev'
_NO_PYDANTIC_DUMP = r"^(?!.*errors\.pydantic\.dev)(?!.*validation errors? for)"

CASES = [
    Case("space-field-invalid", _estimate(old="cells: 1", new="cells: 0"),
         _NO_PYDANTIC_DUMP + r".*space\.components\.0\.cells: .*greater than or equal to 1"),
    Case("space-unknown-op", _estimate(old="skip_connect]", new="skip_conect]"),
         _NO_PYDANTIC_DUMP + r".*space\.components\.0\.ops: .*unknown cnn op 'skip_conect'"),
    Case("search-field-invalid", _estimate(old="batch_size: 4", new="batch_size: 0"),
         _NO_PYDANTIC_DUMP + r".*search\.batch_size: .*greater than or equal to 1"),
    Case("bare-space-invalid",
         lambda tmp: cli("estimate", _bare_space(tmp, channels=-4), "--no-max-batch"),
         _NO_PYDANTIC_DUMP + r".*components\.0\.channels: "),
    Case("config-missing", lambda tmp: cli("estimate", tmp / "nope.yaml"),
         r"config file not found: .*nope\.yaml"),
    Case("config-not-given", lambda tmp: cli("estimate"), r"a config is required"),
    Case("gpu-capacity-without-unit", _estimate("--gpu", "24"),
         r"GPU capacity '24' has no unit: write e\.g\. '24GiB' or '24GB'"),
    Case("gpu-capacity-infinite", _estimate("--gpu", "infGiB"),
         r"GPU capacity 'infGiB' must be a finite number above 0"),
    Case("gpu-capacity-nan", _estimate("--gpu", "nanGB"),
         r"GPU capacity 'nanGB' must be a finite number above 0"),
    Case("gpu-capacity-zero", _estimate("--gpu", "0GiB"), r"'0GiB' must be a finite number above 0"),
    Case("gpu-capacity-unknown-unit", _estimate("--gpu", "24XB"), r"unknown unit 'xb'; use GiB, .* or B"),
    Case("gpu-unknown-name", _estimate("--gpu", "a100-41gb"),
         r"unknown GPU 'a100-41gb'; known GPUs: a100-40gb, .*h200"),
    Case("plan-gpu-capacity-without-unit",
         lambda tmp: cli("plan", _config(tmp), "--gpu", "16", "--limit", "1"),
         r"nasspeech plan: error: GPU capacity '16' has no unit"),
    Case("batch-size-zero", _estimate("--batch-size", "0"), r"--batch-size must be >= 1, got 0"),
    Case("api-capacity-without-unit", lambda tmp: get_profile("40"), r"'40' has no unit",
         error=ValueError),
    Case("api-capacity-negative", lambda tmp: get_profile("-2GiB"), r"finite number above 0",
         error=ValueError),
]


def _bare_space(tmp_path: Path, channels: int) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("input_shape: [1, 8, 8]\nnum_classes: 4\ncomponents:\n"
                    f"  - {{name: cnn, family: cnn, ops: [skip_connect], cells: 1, nodes: 1, "
                    f"channels: {channels}}}\n")
    return path


@params(CASES)
def test_memory_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def _huge_space() -> SearchSpace:
    """A space whose step holds 64 GiB tensors (8192 x 8192 inputs, the most values per sample
    a space accepts, batch 256)."""
    return SearchSpace.model_validate({
        "name": "huge", "input_shape": [1, 8192, 8192], "num_classes": 4,
        "components": [{"name": "cnn", "family": "cnn", "ops": ["sep_conv_3x3", "skip_connect"],
                        "cells": 1, "nodes": 1, "channels": 8}],
    })


def test_meta_tracer_allocates_no_host_memory_the_size_of_the_model() -> None:
    """The meta tracer asks PyTorch which CPU conv backend/layout a conv takes; that probe
    used to allocate a real CPU tensor the size of each conv input (64 GiB here: beyond this
    machine's memory). Every CPU allocation during the trace must stay small."""
    from torch.profiler import ProfilerActivity, profile

    from nasspeech.config import SearchConfig
    from nasspeech.memory.batch import StepTracerSession

    session = StepTracerSession(_huge_space(), SearchConfig(order=1))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trace = session.trace(256)
    assert max(a.nbytes for a in trace.allocs) >= 64 * 1024**3  # the model is that large
    biggest = max((e.cpu_memory_usage for e in prof.events()), default=0)
    assert biggest < 1024**2, f"a {biggest} B host allocation during a meta trace"


@pytest.mark.parametrize("order", [1, 2])
def test_huge_space_estimate_answers(order: int) -> None:
    from nasspeech.memory import estimate

    est = estimate(_huge_space(), 256, "h200", order=order, max_batch=False)
    assert not est.fits and est.peak_allocated_bytes > 256 * 1024**3  # all tensors of the step
