"""The compiled cache for large CPU tensors (nasspeech.kernels.cpu_cache, csrc/cpu_cache.cpp):
reuse, release, nesting, the switch, threads, the profiler, and the runs that use it."""

from __future__ import annotations

import threading

import pytest
import torch

from nasspeech.kernels import cpu_cache, native
from nasspeech.kernels.cpu_cache import cached_cpu_memory, cpu_cache_stats

needs_native = pytest.mark.skipif(native.native_ops() is None,
                                  reason="compiled kernels unavailable here")
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _cache_off_between_tests():
    yield
    stats = cpu_cache_stats()
    assert stats is None or not stats.enabled, "a test left the CPU cache switched on"


@needs_native
def test_freed_blocks_are_reused_and_given_back_at_the_end():
    with cached_cpu_memory() as on:
        assert on
        start = cpu_cache_stats()
        a = torch.empty(3 * MIB // 4, dtype=torch.float32)  # 3 MiB
        ptr = a.data_ptr()
        assert cpu_cache_stats().allocated == start.allocated + 3 * MIB
        del a
        b = torch.empty(3 * MIB // 4, dtype=torch.float32)  # same size class: same block
        assert b.data_ptr() == ptr
        assert ptr % (2 * MIB) == 0  # huge-page aligned
        assert cpu_cache_stats().hits >= start.hits + 1
        del b
        assert cpu_cache_stats().cached >= 3 * MIB
    after = cpu_cache_stats()
    assert not after.enabled and after.cached == 0


@needs_native
def test_a_new_size_evicts_free_blocks_beyond_the_slack():
    """Free blocks of an old size above the slack (256 MiB here) make room for a new size
    instead of staying mapped next to it; within the slack they stay for reuse."""
    with cached_cpu_memory():
        blocks = [torch.empty(2 * MIB) for _ in range(40)]  # 40 x 8 MiB, mapped, not touched
        del blocks
        full = cpu_cache_stats()
        assert full.cached >= 320 * MIB
        new = torch.empty(3 * MIB)  # 12 MiB: a size class the free lists lack
        after = cpu_cache_stats()
        assert after.evictions >= full.evictions + 2  # two 8 MiB blocks make room for 12 MiB
        assert after.reserved <= full.reserved - 16 * MIB + 12 * MIB
        del new
        again = torch.empty(3 * MIB)  # within the slack now: served from the free list
        assert cpu_cache_stats().evictions == after.evictions
        del again


@needs_native
def test_small_tensors_and_results_are_pytorchs():
    torch.manual_seed(0)
    x = torch.randn(64, 8, 32, 32)  # 2 MiB: taken from the cache inside the block
    w = torch.randn(8, 8, 3, 3)
    expected = torch.nn.functional.conv2d(x, w, padding=1)
    with cached_cpu_memory():
        before = cpu_cache_stats().allocated
        small = torch.ones(1000)
        assert cpu_cache_stats().allocated == before  # under 1 MiB: PyTorch's allocator
        got = torch.nn.functional.conv2d(x.clone(), w, padding=1)
        assert cpu_cache_stats().allocated > before
    torch.testing.assert_close(got, expected)
    assert small.sum().item() == 1000


@needs_native
def test_tensors_outliving_the_block_stay_valid_and_are_unmapped_when_freed():
    with cached_cpu_memory():
        kept = torch.full((MIB,), 2.0)  # 4 MiB
    stats = cpu_cache_stats()
    assert not stats.enabled and stats.allocated >= 4 * MIB
    assert kept.sum().item() == 2.0 * MIB
    reserved = stats.reserved
    del kept
    after = cpu_cache_stats()
    assert after.allocated == stats.allocated - 4 * MIB
    assert after.reserved == reserved - 4 * MIB and after.cached == 0


@needs_native
def test_blocks_nest_and_only_the_outermost_switches_off():
    with cached_cpu_memory():
        with cached_cpu_memory():
            assert cpu_cache_stats().enabled
        assert cpu_cache_stats().enabled
        t = torch.empty(2 * MIB)
        assert cpu_cache_stats().allocated >= 8 * MIB
        del t
    assert not cpu_cache_stats().enabled


@needs_native
def test_switched_off_by_argument_and_environment(monkeypatch):
    with cached_cpu_memory(enabled=False) as on:
        assert not on and not cpu_cache_stats().enabled
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "0")
    with cached_cpu_memory() as on:
        assert not on and not cpu_cache_stats().enabled
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "1")
    with cached_cpu_memory() as on:
        assert on


def test_without_compiled_kernels_the_block_runs_on_pytorchs_allocator(monkeypatch):
    monkeypatch.setattr(cpu_cache, "native_ops", lambda: None)
    with cached_cpu_memory() as on:
        assert not on
        assert torch.ones(MIB).sum().item() == MIB
    assert cpu_cache.cpu_cache_stats() is None


@needs_native
def test_threads_allocating_and_freeing_at_once_leave_consistent_counters():
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            g = torch.Generator().manual_seed(seed)
            for i in range(200):
                n = (1 + (i * 7 + seed) % 5) * MIB // 4
                t = torch.rand(n, generator=g)
                assert 0.0 <= t.min().item() and t.max().item() < 1.0
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with cached_cpu_memory():
        before = cpu_cache_stats().allocated
        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert cpu_cache_stats().allocated == before


@needs_native
def test_profiler_sees_the_cached_allocations():
    from torch.profiler import ProfilerActivity, profile

    with cached_cpu_memory(), profile(activities=[ProfilerActivity.CPU],
                                      profile_memory=True) as prof:
        t = torch.empty(4 * MIB)
        del t
    total = sum(e.cpu_memory_usage for e in prof.key_averages() if e.key == "aten::empty")
    assert total >= 16 * MIB


def test_runs_switch_it_on_for_the_cpu_only():
    from nasspeech.workflow.devices import cpu_memory_cache

    with cpu_memory_cache(torch.device("meta")) as on:
        assert not on
    with cpu_memory_cache(torch.device("cpu")) as on:
        assert on == (native.native_ops() is not None)
