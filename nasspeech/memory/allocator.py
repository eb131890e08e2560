"""A model of PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp).

What it reproduces: sizes rounded up to 512 B; a small pool (requests <= 1 MiB, carved from
2 MiB segments) and a large pool (20 MiB segments for requests < 10 MiB, else the request
rounded up to 2 MiB); best-fit search by (size, address) among cached free blocks; block
splitting (small pool: remainder >= 512 B; large pool: remainder > 1 MiB); merging of freed
neighbours; and, when a new segment would not fit in the device, freeing every unused
cached segment and retrying before reporting out-of-memory. One stream, no
``max_split_size_mb``/expandable segments (the defaults).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

MiB = 1024**2
MIN_BLOCK = 512
SMALL_SIZE = 1 * MiB
SMALL_BUFFER = 2 * MiB
LARGE_BUFFER = 20 * MiB
MIN_LARGE_ALLOC = 10 * MiB
ROUND_LARGE = 2 * MiB


class OutOfMemory(Exception):
    """The modelled allocator could not serve a request even after freeing its cache."""


def round_size(nbytes: int) -> int:
    if nbytes < MIN_BLOCK:
        return MIN_BLOCK
    return MIN_BLOCK * ((nbytes + MIN_BLOCK - 1) // MIN_BLOCK)


def segment_size(size: int) -> int:
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * ((size + ROUND_LARGE - 1) // ROUND_LARGE)


@dataclass(slots=True)
class _Block:
    addr: int
    size: int
    segment: int
    small: bool
    free: bool = True
    prev: _Block | None = None
    next: _Block | None = None


@dataclass
class ReplayResult:
    peak_allocated: int
    peak_reserved: int
    oom: bool
    segments: int


class CachingAllocatorModel:
    """Replays allocations and frees; tracks allocated and reserved bytes and their peaks."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.pools: dict[bool, list[tuple[int, int, _Block]]] = {True: [], False: []}
        self.segments: dict[int, int] = {}  # segment id -> size
        self.segment_heads: dict[int, _Block] = {}
        self.allocated = self.reserved = 0
        self.peak_allocated = self.peak_reserved = 0
        self._next_addr = 0
        self._next_segment = 0

    # -- public ------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> _Block:
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        block = self._take_free(size, small)
        if block is None:
            block = self._new_segment(size, small)
        block = self._split(block, size)
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def free(self, block: _Block) -> None:
        block.free = True
        self.allocated -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._remove_free(neighbour)
                block = self._merge(block, neighbour)
        self._add_free(block)

    def empty_cache(self) -> None:
        """Release every segment that is wholly free (what the retry path does)."""
        for seg, head in list(self.segment_heads.items()):
            if head.free and head.next is None and head.prev is None:
                self._remove_free(head)
                self.reserved -= self.segments.pop(seg)
                del self.segment_heads[seg]

    # -- internals ---------------------------------------------------------------------
    def _take_free(self, size: int, small: bool) -> _Block | None:
        pool = self.pools[small]
        i = bisect.bisect_left(pool, (size, -1))
        if i == len(pool):
            return None
        _, _, block = pool.pop(i)
        return block

    def _new_segment(self, size: int, small: bool) -> _Block:
        seg_size = segment_size(size)
        if self.capacity is not None and self.reserved + seg_size > self.capacity:
            self.empty_cache()
            if self.reserved + seg_size > self.capacity:
                raise OutOfMemory(
                    f"cannot reserve {seg_size} B: {self.reserved} B reserved of {self.capacity}"
                )
        seg = self._next_segment
        self._next_segment += 1
        block = _Block(self._next_addr, seg_size, seg, small)
        self._next_addr += seg_size
        self.segments[seg] = seg_size
        self.segment_heads[seg] = block
        self.reserved += seg_size
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return block

    def _split(self, block: _Block, size: int) -> _Block:
        remaining = block.size - size
        should = remaining >= MIN_BLOCK if block.small else remaining > SMALL_SIZE
        if not should:
            return block
        rest = _Block(block.addr + size, remaining, block.segment, block.small,
                      prev=block, next=block.next)
        if block.next is not None:
            block.next.prev = rest
        block.next = rest
        block.size = size
        self._add_free(rest)
        return block

    def _merge(self, block: _Block, other: _Block) -> _Block:
        first, second = (block, other) if block.addr < other.addr else (other, block)
        first.size += second.size
        first.next = second.next
        if second.next is not None:
            second.next.prev = first
        first.free = True
        if self.segment_heads.get(first.segment) is second:
            self.segment_heads[first.segment] = first
        return first

    def _add_free(self, block: _Block) -> None:
        bisect.insort(self.pools[block.small], (block.size, block.addr, block))

    def _remove_free(self, block: _Block) -> None:
        pool = self.pools[block.small]
        i = bisect.bisect_left(pool, (block.size, block.addr))
        if i < len(pool) and pool[i][2] is block:
            pool.pop(i)


def replay(
    sizes: list[int],
    events: Iterable[int],
    initial: Iterable[int] = (),
    capacity: int | None = None,
    preallocated: Iterable[int] = (),
) -> ReplayResult:
    """Run ``initial`` allocations, then ``events`` (``i`` allocates ``sizes[i]``, ``~i``
    frees it) through the model. ``preallocated`` are sizes allocated first and kept (e.g.
    the cuBLAS workspace). ``oom`` is True if a request could not be served.

    The same model as :class:`CachingAllocatorModel`, written as one loop (a step replays
    hundreds of thousands of events; tests check that both agree): a free block is found
    by its key ``size << 64 | address`` in a sorted list per pool.
    """
    small_pool: list[int] = []  # keys of free blocks, sorted: by size, then address
    large_pool: list[int] = []
    free_blocks: dict[int, _Block] = {}  # key -> block
    heads: dict[int, _Block] = {}  # segment -> its first block
    seg_sizes: dict[int, int] = {}
    allocated = reserved = peak_allocated = peak_reserved = next_addr = next_segment = 0
    insort, bisect_left = bisect.insort, bisect.bisect_left

    def remove_free(block: _Block) -> None:
        key = block.size << 64 | block.addr
        pool = small_pool if block.small else large_pool
        i = bisect_left(pool, key)
        if i < len(pool) and pool[i] == key:
            del pool[i]
            del free_blocks[key]

    def empty_cache() -> None:
        nonlocal reserved
        for seg, head in list(heads.items()):
            if head.free and head.next is None and head.prev is None:
                remove_free(head)
                reserved -= seg_sizes.pop(seg)
                del heads[seg]

    def malloc(nbytes: int) -> _Block:
        nonlocal allocated, reserved, peak_allocated, peak_reserved, next_addr, next_segment
        size = MIN_BLOCK if nbytes < MIN_BLOCK else MIN_BLOCK * ((nbytes + MIN_BLOCK - 1)
                                                                 // MIN_BLOCK)
        small = size <= SMALL_SIZE
        pool = small_pool if small else large_pool
        i = bisect_left(pool, size << 64)
        if i < len(pool):
            block = free_blocks.pop(pool.pop(i))
        else:
            if small:
                seg_size = SMALL_BUFFER
            elif size < MIN_LARGE_ALLOC:
                seg_size = LARGE_BUFFER
            else:
                seg_size = ROUND_LARGE * ((size + ROUND_LARGE - 1) // ROUND_LARGE)
            if capacity is not None and reserved + seg_size > capacity:
                empty_cache()
                if reserved + seg_size > capacity:
                    raise OutOfMemory(f"cannot reserve {seg_size} B")
            block = _Block(next_addr, seg_size, next_segment, small)
            seg_sizes[next_segment] = seg_size
            heads[next_segment] = block
            next_segment += 1
            next_addr += seg_size
            reserved += seg_size
            peak_reserved = max(peak_reserved, reserved)
        remaining = block.size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:
            nxt = block.next
            addr = block.addr + size
            rest = _Block(addr, remaining, block.segment, small, True, block, nxt)
            if nxt is not None:
                nxt.prev = rest
            block.next = rest
            block.size = size
            key = remaining << 64 | addr
            insort(pool, key)
            free_blocks[key] = rest
        block.free = False
        allocated += block.size
        peak_allocated = max(peak_allocated, allocated)
        return block

    def free(block: _Block) -> None:
        nonlocal allocated
        block.free = True
        allocated -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                remove_free(neighbour)
                first, second = ((block, neighbour) if block.addr < neighbour.addr
                                 else (neighbour, block))
                first.size += second.size
                first.next = second.next
                if second.next is not None:
                    second.next.prev = first
                first.free = True
                if heads.get(first.segment) is second:
                    heads[first.segment] = first
                block = first
        key = block.size << 64 | block.addr
        insort(small_pool if block.small else large_pool, key)
        free_blocks[key] = block

    blocks: dict[int, _Block] = {}
    oom = False
    try:
        for n in preallocated:
            malloc(n)
        for i in initial:
            blocks[i] = malloc(sizes[i])
        pop = blocks.pop
        for e in events:
            if e >= 0:
                blocks[e] = malloc(sizes[e])
            else:
                block = pop(~e, None)
                if block is not None:
                    free(block)
    except OutOfMemory:
        oom = True
    return ReplayResult(peak_allocated, peak_reserved, oom, len(seg_sizes))
