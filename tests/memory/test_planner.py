"""The planner: its parallel, shared run gives the old serial planner's plans exactly, the
largest-batch plan from the batch model equals a traced one, bf16 and recomputed depthwise
outputs are offered, and progress lines report the best plan so far."""

from __future__ import annotations

import pytest
from helpers import cnn_space

from nasspeech.config import SearchConfig
from nasspeech.memory.batch import BatchModel
from nasspeech.memory.estimate import evaluate
from nasspeech.memory.overheads import CUDA_CONTEXT
from nasspeech.memory.per_op import per_op_costs
from nasspeech.memory.planner import _candidates, _kept, plan
from nasspeech.memory.profiles import get_profile
from nasspeech.memory.session import StepTracerSession

BATCH = 48


def _space():
    return cnn_space(ops=("max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "skip_connect",
                          "none"), cells=3, nodes=2, channels=8, size=16)


@pytest.fixture(scope="module")
def gpu() -> str:
    """A device too small for the space as given at BATCH (so that every kind of plan
    appears), large enough for some candidates."""
    session = StepTracerSession(_space(), SearchConfig(order=1))
    base = evaluate(session.trace(BATCH), get_profile("a100-40gb"), 1)
    overhead = CUDA_CONTEXT.value + base.conv_workspace_bytes[1]
    return f"{int(overhead + 0.92 * base.peak_allocated_bytes)}B"


def _old_serial_plan(space, batch_size, gpu, search):
    """The planner before sharing and forking (its code, kept here as the reference)."""
    profile = get_profile(gpu)
    session = StepTracerSession(space, search)
    base_trace = session.trace(batch_size)
    base = evaluate(base_trace, profile, search.order)
    plans = []
    costs = per_op_costs(space, batch_size, profile, search, trace=base_trace)
    for text, changes in _candidates(space, costs):
        try:
            variant = space.with_changes(**changes)
        except ValueError:
            continue
        est = evaluate(StepTracerSession(variant, search).trace(batch_size), profile,
                       search.order)
        plans.append((text, variant, batch_size, est,
                      _kept(variant, space, batch_size, batch_size)))
    model = BatchModel.fit(session, check=base_trace)
    if model is not None:
        best = model.max_batch(profile)
        base.max_batch_size = best
        if 1 <= best < batch_size:
            est = evaluate(session.trace(best), profile, search.order)
            est.max_batch_size = best
            plans.append((f"batch size {best}", space, best, est,
                          _kept(space, space, best, batch_size)))
    fitting = [p for p in plans if p[3].fits]
    fitting.sort(key=lambda p: (-p[4], p[3].total_bytes))
    return base, fitting


def _key(est) -> tuple:
    return (est.peak_allocated_bytes, est.peak_reserved_bytes, est.total_bytes, est.fits,
            est.max_batch_size, est.breakdown)


def test_shared_parallel_plan_equals_the_old_serial_plan(gpu: str) -> None:
    search = SearchConfig(order=1)
    old_base, old = _old_serial_plan(_space(), BATCH, gpu, search)
    for parallel in (False, True):
        base, plans = plan(_space(), BATCH, gpu, search, parallel=parallel)
        assert _key(base) == _key(old_base)
        plans = [p for p in plans if not p.description.startswith(("precision", "recompute"))]
        assert [(p.description, p.batch_size, p.kept, _key(p.estimate)) for p in plans] == \
            [(text, b, kept, _key(est)) for text, _, b, est, kept in old]
    assert any(p.description.startswith("batch size") for p in plans)
    assert any("drop" in p.description for p in plans)


def test_bf16_is_offered_and_progress_shows_the_best_so_far(gpu: str) -> None:
    lines: list[str] = []
    base, plans = plan(_space(), BATCH, gpu, SearchConfig(order=1), progress=lines.append,
                       parallel=False)
    bf16 = next(p for p in plans if p.description.startswith("precision bf16"))
    assert bf16.kept == 1.0 and bf16.changes == {"search": {"precision": "bf16"}}
    assert bf16.estimate.precision == "bf16"
    assert bf16.estimate.total_bytes < base.total_bytes
    assert plans[0] is bf16  # it keeps the whole search
    steps = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] for line in steps] == \
        [f"[{i}/{len(steps)}" for i in range(1, len(steps) + 1)]  # one line per job
    assert any("precision bf16 (autocast): " in line for line in steps)
    assert "best so far: precision bf16" in steps[-1]


def test_recomputed_depthwise_outputs_are_offered_and_traced_with_less_memory():
    from nasspeech.memory.planner import _candidate_jobs, _run

    space, profile = _space(), get_profile("a100-40gb")
    search = SearchConfig(order=1)
    session = StepTracerSession(space, search)
    base_trace = session.trace(BATCH)
    base = evaluate(base_trace, profile, 1)
    costs = per_op_costs(space, BATCH, profile, search, trace=base_trace)
    jobs = [j for j in _candidate_jobs(space, costs, search) if j.text.startswith("recompute")]
    assert len(jobs) == 1 and dict(jobs[0].search) == {"recompute_depthwise": True}
    kind, est = _run(jobs[0], space, search, session, base_trace, BATCH, profile)
    assert kind == "plan"
    # two sep_conv and one dil_conv depthwise output per edge are no longer kept
    assert est.total_bytes < base.total_bytes
    assert est.recompute_depthwise and not base.recompute_depthwise
    from nasspeech.memory.report import render

    assert "depthwise outputs recomputed" in render(est).splitlines()[0]
    on = search.model_copy(update={"recompute_depthwise": True})
    assert not [j for j in _candidate_jobs(space, costs, on) if j.text.startswith("recompute")]

