"""The fast tracer (meta tensors, cached op results) gives the fake tracer's trace exactly, and
the ways the estimate speeds up the largest-batch search keep its results."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from helpers import cnn_space, fake_trace, lstm_space

from nasspeech.config import SearchConfig
from nasspeech.memory.allocator import CachingAllocatorModel, MiB, OutOfMemory, replay
from nasspeech.memory.batch import BatchModel
from nasspeech.memory.fork import BackgroundTraces
from nasspeech.memory.profiles import get_profile
from nasspeech.memory.session import StepTracerSession
from nasspeech.space.config import SearchSpace


def attention_space() -> SearchSpace:
    """A small CNN feeding recurrent ops with self-attention (scaled-dot-product attention,
    layer norm, linear layers) and plain recurrent ops."""
    return SearchSpace.model_validate({
        "input_shape": [2, 16, 8], "num_classes": 4,
        "components": [
            {"name": "cnn", "family": "cnn", "ops": ["sep_conv_3x3", "skip_connect"],
             "cells": 1, "nodes": 1, "channels": 2, "reductions": [],
             "handover": "fold_frequency"},
            {"name": "seq", "family": "seq",
             "ops": ["lstm_att_1", "rnn_att_1", "rnn_1", "skip_connect", "none"],
             "cells": 1, "nodes": 1, "channels": 16, "handover": "mean_over_time"},
        ],
    })


def conv_space() -> SearchSpace:
    """Every kind of CNN op, with stride-2 (reduction) edges."""
    return cnn_space(ops=("max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "dil_conv_3x3",
                          "conv_7x1_1x7", "skip_connect", "none"), cells=3, nodes=1, size=8)


def _records(trace) -> list[tuple]:
    return [(a.nbytes, a.category, a.component, a.op, a.aten) for a in trace.allocs]


SPACES = {
    "conv-order1": (conv_space, 1),
    "conv-order2": (conv_space, 2),
    "lstm-order2": (lstm_space, 2),
    "attention-order2": (attention_space, 2),
}


@pytest.mark.parametrize("name", list(SPACES))
def test_meta_trace_equals_fake_trace(name: str) -> None:
    make, order = SPACES[name]
    meta = StepTracerSession(make(), SearchConfig(order=order)).trace(3)
    fake = fake_trace(make(), 3, order, target="cuda")  # fake tensors, after a warm-up step
    assert meta.meta["primed"] is True
    assert len(meta.events) > 500
    assert meta.events == fake.events and meta.initial == fake.initial
    assert _records(meta) == _records(fake)
    # (FakeTensor answers ``tensor.device`` through the dispatcher: prim::device)
    assert meta.meta["aten_ops"] == [op for op in fake.meta["aten_ops"] if op != "aten::device"]
    # the comparison can fail: the same space at another batch size gives other sizes
    other = StepTracerSession(make(), SearchConfig(order=order)).trace(4)
    assert other.events == meta.events and other.sizes() != meta.sizes()


def test_the_cpu_kernel_choices_are_exercised() -> None:
    """Where the meta tensors' own kernels differ from a CPU tensor's, the trace shows the
    CPU kernels' allocations (what the fake trace has)."""
    att = StepTracerSession(attention_space(), SearchConfig(order=1)).trace(2)
    assert any(a.aten.startswith("_scaled_dot_product_flash_attention_for_cpu")
               for a in att.allocs)
    assert not any(a.aten.startswith("_safe_softmax") for a in att.allocs)
    assert any(op.startswith("aten::_foreach") for op in att.meta["aten_ops"])


@pytest.mark.parametrize("make", [conv_space, attention_space])
def test_sizes_only_trace_has_the_same_events(make) -> None:
    session = StepTracerSession(make(), SearchConfig(order=2))
    full = session.trace(3)
    light = session.trace(3, attribute=False)
    assert light.events == full.events and light.initial == full.initial
    assert light.sizes() == full.sizes()
    assert light.allocs == [] and full.allocs  # no per-storage records were made


def _skip_unless_forks_run_autograd() -> None:
    """(At run time: an earlier test may have started autograd's device threads.)"""
    from nasspeech.memory.fork import forked_autograd_works

    if not forked_autograd_works():
        pytest.skip("this process started autograd's device threads (a CUDA machine): a "
                    "forked copy cannot run backward; estimates then trace in one process")


def test_background_traces_match_traces_in_this_process() -> None:
    _skip_unless_forks_run_autograd()
    session = StepTracerSession(conv_space(), SearchConfig(order=2))
    background = BackgroundTraces(session, [(2, None), (3, 1), (0, None), (4, None)])
    here = session.trace(2, attribute=False)
    there = background.get(2)
    assert there is not None and there.allocs == [] and there.meta["primed"] is True
    assert there.events == here.events and there.initial == here.initial
    assert there.sizes() == here.sizes()
    prefix = background.get(3)
    assert prefix is not None and prefix.meta["partial"] is True
    assert 0 < len(prefix.events) < len(here.events)
    assert background.get(0) is None  # batch 0 fails in that process ...
    assert background.get(4) is None  # ... which then stops
    assert not background.jobs and background.pid is None


def test_partial_trace_is_a_prefix_of_the_step() -> None:
    session = StepTracerSession(conv_space(), SearchConfig(order=2))
    full = session.trace(3, attribute=False)
    prefix = session.trace(3, attribute=False, stop_after_tasks=2)
    n = len(prefix.events)
    assert prefix.meta["partial"] is True and 1000 < n < len(full.events)
    assert prefix.events == full.events[:n]
    assert prefix.sizes() == full.sizes()[: len(prefix.sizes())]
    # the step was left unfinished: the session cannot trace another
    with pytest.raises(RuntimeError, match="partial"):
        session.trace(3)


def test_fit_to_the_requested_batch_and_its_check() -> None:
    session = StepTracerSession(cnn_space(size=8), SearchConfig(order=2))
    background = BackgroundTraces(session, [(2, None), (3, 2)])
    trace = session.trace(6)
    model = BatchModel.fit_to(session, trace, background=background)
    sequential = StepTracerSession(cnn_space(size=8), SearchConfig(order=2))
    reference = BatchModel.fit(sequential)  # batches 2 and 3, checked at 5
    assert model is not None and reference is not None
    assert np.array_equal(model.slope, reference.slope)
    assert np.array_equal(model.intercept, reference.intercept)
    assert model.slope.max() > 0 and model.template is trace
    # the check can fail: other sizes, or other events
    check = StepTracerSession(cnn_space(size=8), SearchConfig(order=2)).trace(3)
    assert model.checks(check)
    check.allocs[-1].nbytes += 512
    assert not model.checks(check)
    other = StepTracerSession(cnn_space(size=8, cells=3), SearchConfig(order=2)).trace(3)
    assert not model.checks(other)
    assert BatchModel.from_traces(trace, trace, other) is None


def test_estimate_in_one_or_two_processes() -> None:
    from nasspeech.memory import estimate

    space = cnn_space(size=8)
    one = estimate(space, 6, order=2, parallel=False)
    two = estimate(space, 6, order=2, parallel=True)
    assert one.max_batch_size is not None and one.max_batch_size > 6
    assert (one.peak_allocated_bytes, one.peak_reserved_bytes, one.max_batch_size) == (
        two.peak_allocated_bytes, two.peak_reserved_bytes, two.max_batch_size)


class _Boundary(BatchModel):
    """A batch model whose step fits up to ``boundary`` and whose live bytes are 1 MiB per
    sample: what the search sees, without traces."""

    def __init__(self, boundary: int) -> None:
        self.boundary, self.slope, self.calls = boundary, np.zeros(1), []

    def peak_allocated_lower_bound(self, batch: int) -> int:
        return batch * MiB

    def fits(self, batch: int, profile) -> bool:
        self.calls.append(batch)
        return batch <= self.boundary


@pytest.mark.parametrize("boundary", [0, 1, 2, 7, 100, 399, 400, 401, 441, 444])
def test_max_batch_search(boundary: int) -> None:
    from nasspeech.memory.overheads import CUDA_CONTEXT

    gpu = get_profile(CUDA_CONTEXT.value + 444 * MiB + 100)  # the bound passes up to 444
    model = _Boundary(boundary)
    assert model.max_batch(gpu) == boundary
    if boundary > 440:  # the search starts at the bound: a few replays, not a bisection
        assert len(model.calls) <= 5
    # replaying ahead in another process changes nothing but the time
    assert model.max_batch(gpu, parallel=True) == boundary


def test_max_batch_when_more_fits_further_up() -> None:
    """A larger batch can fit where a smaller one does not (fragmentation): the search does
    not stop at a boundary with 5 % more still fitting."""
    from nasspeech.memory.overheads import CUDA_CONTEXT

    class Islands(_Boundary):
        def fits(self, batch: int, profile) -> bool:
            return batch <= 300 or 380 <= batch <= 420

    gpu = get_profile(CUDA_CONTEXT.value + 444 * MiB + 100)
    best = Islands(0).max_batch(gpu)
    assert best == 420


def _check_layout(model: CachingAllocatorModel, used: list) -> None:
    """The model's books balance: segments are tiled by their blocks, free neighbours are
    merged, the free lists hold exactly the free blocks, and the byte counts add up."""
    free = set()
    for seg, head in model.segment_heads.items():
        block, addr, total = head, head.addr, 0
        assert head.prev is None
        while block is not None:
            assert block.addr == addr and block.segment == seg
            assert not (block.free and block.next is not None and block.next.free)
            if block.free:
                free.add(id(block))
            addr, total, block = addr + block.size, total + block.size, block.next
        assert total == model.segments[seg]
    assert free == {id(b) for b in model.free_blocks.values()}
    assert sorted(model.free_blocks) == sorted(model.pools[True] + model.pools[False])
    assert model.reserved == sum(model.segments.values()) <= model.peak_reserved
    assert model.allocated == sum(b.size for b in used) <= model.peak_allocated


def test_the_allocator_model_keeps_its_books() -> None:
    """Random allocations and frees (both pools, splits, merges, the free-cache-and-retry
    path); :func:`replay` drives the same model and reports its peaks."""
    rng = random.Random(0)
    outcomes = set()
    for _ in range(150):
        n = rng.randint(1, 150)
        sizes = [rng.choice((rng.randint(1, 4096), rng.randint(1, 3 * MiB),
                             rng.randint(1, 30 * MiB))) for _ in range(n)]
        events, live = [], []
        for i in range(n):
            events.append(i)
            live.append(i)
            while live and rng.random() < 0.5:
                events.append(~live.pop(rng.randrange(len(live))))
        capacity = rng.choice((None, 40 * MiB, 120 * MiB, 400 * MiB))
        model, blocks, oom = CachingAllocatorModel(capacity), {}, False
        try:
            for e in events:
                if e >= 0:
                    blocks[e] = model.malloc(sizes[e])
                else:
                    model.free(blocks.pop(~e))
                _check_layout(model, list(blocks.values()))
        except OutOfMemory:
            oom = True
        got = replay(sizes, events, (), capacity)
        assert (got.peak_allocated, got.peak_reserved, got.oom) == \
            (model.peak_allocated, model.peak_reserved, oom)
        outcomes.add(oom)
    assert outcomes == {True, False}  # both paths (out of memory or not) were exercised


def test_meta_tracer_refuses_cpu_targets() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        StepTracerSession(cnn_space(), SearchConfig(order=1), target="cpu", meta=True)
    # the CPU target traces fake tensors (the oneDNN LSTM workspaces need real kernels)
    session = StepTracerSession(cnn_space(), SearchConfig(order=1), target="cpu")
    assert session.meta is False and session.trace(2).events
    assert torch.is_grad_enabled()
