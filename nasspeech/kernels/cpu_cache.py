"""Large CPU tensors from a cache of huge-page blocks while a search or training run works.

A CPU search step allocates and frees tens of GB of activations and gradients, nearly all of
them the same few sizes every step. glibc's heap keeps freed memory in a different
arrangement each pass, so the step's resident memory ends up well above what is live, and
every page is a 4 KiB one. Inside :func:`cached_cpu_memory` the compiled allocator of
``csrc/cpu_cache.cpp`` serves every CPU tensor of 1 MiB or more from per-size free lists
(2 MiB-aligned blocks, transparent huge pages asked for) and gives all it keeps back to the
system when the outermost block ends. Smaller tensors use PyTorch's allocator as before.

It is switched on by the search and training runs (:mod:`nasspeech.workflow`) when the
compiled kernels are built; ``NASSPEECH_CPU_CACHE=0`` leaves PyTorch's allocator alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from nasspeech.kernels.native import native_ops

_LOCK = threading.Lock()
_DEPTH = [0]


@dataclass(frozen=True)
class CacheStats:
    """The cache's state in bytes: ``allocated`` is held by live tensors, ``reserved`` is
    mapped (live + ``cached`` free blocks); ``hits``/``misses`` count requests served from
    the free lists / by a new mapping; ``evictions`` counts free blocks unmapped to make room
    for a size the free lists lacked."""

    enabled: bool
    allocated: int
    reserved: int
    cached: int
    peak_reserved: int
    hits: int
    misses: int
    evictions: int


def cpu_cache_enabled() -> bool:
    """Whether runs may use the cache (``NASSPEECH_CPU_CACHE`` is not 0/off/false/no)."""
    return os.environ.get("NASSPEECH_CPU_CACHE", "1").strip().lower() not in (
        "0", "off", "false", "no")


def cpu_cache_stats() -> CacheStats | None:
    """The cache's counters, or ``None`` where the compiled kernels are not built."""
    ops = native_ops()
    if ops is None:
        return None
    enabled, *rest = ops.cpu_cache_stats()
    return CacheStats(bool(enabled), *rest)


@contextlib.contextmanager
def cached_cpu_memory(enabled: bool | None = None) -> Iterator[bool]:
    """Serve large CPU tensors from the cache while the block runs; yields whether it does.

    ``enabled=None`` follows ``NASSPEECH_CPU_CACHE``; without the compiled kernels the block
    runs on PyTorch's allocator. Blocks nest: the outermost one switches the cache off and
    unmaps the free blocks; tensors still alive then are unmapped when they are freed."""
    if enabled is None:
        enabled = cpu_cache_enabled()
    ops = native_ops() if enabled else None
    if ops is None:
        yield False
        return
    with _LOCK:
        _DEPTH[0] += 1
        if _DEPTH[0] == 1:
            ops.cpu_cache_set_enabled(True)
    try:
        yield True
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                ops.cpu_cache_set_enabled(False)
