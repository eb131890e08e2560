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
    """Replays allocations and frees; tracks allocated and reserved bytes and their peaks.

    The one model of the allocator: :func:`replay` drives it over a trace (hundreds of
    thousands of events), so the hot paths keep their state in locals: a free block is found
    by its key ``size << 64 | address`` in a sorted list per pool.
    """

    __slots__ = ("_next_addr", "_next_segment", "allocated", "capacity", "free_blocks",
                 "peak_allocated", "peak_reserved", "pools", "reserved", "segment_heads",
                 "segments")

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.pools: dict[bool, list[int]] = {True: [], False: []}  # keys of free blocks
        self.free_blocks: dict[int, _Block] = {}  # key -> block
        self.segments: dict[int, int] = {}  # segment id -> size
        self.segment_heads: dict[int, _Block] = {}  # segment id -> its first block
        self.allocated = self.reserved = 0
        self.peak_allocated = self.peak_reserved = 0
        self._next_addr = 0
        self._next_segment = 0

    def malloc(self, nbytes: int) -> _Block:
        size = MIN_BLOCK if nbytes < MIN_BLOCK else MIN_BLOCK * ((nbytes + MIN_BLOCK - 1)
                                                                 // MIN_BLOCK)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        i = bisect.bisect_left(pool, size << 64)
        if i < len(pool):
            block = self.free_blocks.pop(pool.pop(i))
        else:
            block = self._new_segment(size, small)
        remaining = block.size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:  # split
            nxt = block.next
            addr = block.addr + size
            rest = _Block(addr, remaining, block.segment, small, True, block, nxt)
            if nxt is not None:
                nxt.prev = rest
            block.next = rest
            block.size = size
            key = remaining << 64 | addr
            bisect.insort(pool, key)
            self.free_blocks[key] = rest
        block.free = False
        allocated = self.allocated = self.allocated + block.size
        if allocated > self.peak_allocated:  # noqa: PLR1730 - the hot path; max() is slower
            self.peak_allocated = allocated
        return block

    def free(self, block: _Block) -> None:
        block.free = True
        self.allocated -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:  # merge
                self._remove_free(neighbour)
                first, second = ((block, neighbour) if block.addr < neighbour.addr
                                 else (neighbour, block))
                first.size += second.size
                first.next = second.next
                if second.next is not None:
                    second.next.prev = first
                first.free = True
                if self.segment_heads.get(first.segment) is second:
                    self.segment_heads[first.segment] = first
                block = first
        key = block.size << 64 | block.addr
        bisect.insort(self.pools[block.small], key)
        self.free_blocks[key] = block

    def empty_cache(self) -> None:
        """Release every segment that is wholly free (what the retry path does)."""
        for seg, head in list(self.segment_heads.items()):
            if head.free and head.next is None and head.prev is None:
                self._remove_free(head)
                self.reserved -= self.segments.pop(seg)
                del self.segment_heads[seg]

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

    def _remove_free(self, block: _Block) -> None:
        key = block.size << 64 | block.addr
        pool = self.pools[block.small]
        i = bisect.bisect_left(pool, key)
        if i < len(pool) and pool[i] == key:
            del pool[i]
            del self.free_blocks[key]


def replay(
    sizes: list[int],
    events: Iterable[int],
    initial: Iterable[int] = (),
    capacity: int | None = None,
    preallocated: Iterable[int] = (),
) -> ReplayResult:
    """Run ``initial`` allocations, then ``events`` (``i`` allocates ``sizes[i]``, ``~i``
    frees it) through a :class:`CachingAllocatorModel`. ``preallocated`` are sizes allocated
    first and kept (e.g. the cuBLAS workspace). ``oom`` is True if a request could not be
    served."""
    model = CachingAllocatorModel(capacity)
    malloc, free = model.malloc, model.free
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
    return ReplayResult(model.peak_allocated, model.peak_reserved, oom, len(model.segments))
