"""The caching-allocator model: rounding, pools, segment sizes, splitting, reuse, OOM retry."""

from __future__ import annotations

import pytest

from nasspeech.memory.allocator import (
    CachingAllocatorModel,
    MiB,
    OutOfMemory,
    replay,
    round_size,
    segment_size,
)


def test_rounding_and_segment_sizes() -> None:
    assert [round_size(n) for n in (1, 512, 513, 1000)] == [512, 512, 1024, 1024]
    assert segment_size(1 * MiB) == 2 * MiB          # small pool
    assert segment_size(1 * MiB + 512) == 20 * MiB   # large pool, < 10 MiB
    assert segment_size(10 * MiB + 1) == 12 * MiB    # rounded up to 2 MiB


def test_small_blocks_share_a_segment_and_are_reused() -> None:
    m = CachingAllocatorModel()
    blocks = [m.malloc(1000) for _ in range(4)]
    assert m.reserved == 2 * MiB and m.allocated == 4 * 1024
    m.free(blocks[1])
    again = m.malloc(900)  # best fit: the freed 1 KiB block
    assert again.addr == blocks[1].addr and m.reserved == 2 * MiB


def test_large_block_split_and_merge() -> None:
    m = CachingAllocatorModel()
    a = m.malloc(3 * MiB)
    b = m.malloc(12 * MiB)  # carved from the same 20 MiB segment's remainder
    assert m.reserved == 20 * MiB
    m.free(a)
    m.free(b)
    c = m.malloc(19 * MiB)  # the merged 20 MiB block serves it
    assert m.reserved == 20 * MiB and c.addr == a.addr


def test_free_and_retry_before_oom() -> None:
    m = CachingAllocatorModel(capacity=24 * MiB)
    x = m.malloc(12 * MiB)   # 12 MiB segment
    m.free(x)                # cached, unused
    y = m.malloc(16 * MiB)   # needs a new 16 MiB segment: only fits after releasing the cache
    assert m.reserved == 16 * MiB and y.size == 16 * MiB
    with pytest.raises(OutOfMemory):
        m.malloc(10 * MiB)


def test_replay_peaks() -> None:
    r = replay([100, 3 * MiB, 600], [0, 1, ~0, 2, ~1, ~2])
    assert r.peak_allocated == 512 + 3 * MiB + 1024 - 512 or r.peak_allocated == 512 + 3 * MiB
    assert r.peak_reserved == 22 * MiB and not r.oom
    assert replay([30 * MiB], [0], capacity=20 * MiB).oom
