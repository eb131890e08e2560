"""Device choice and CPU threads: the same code path on CPU and CUDA (the precision of the
forward passes is :mod:`nasspeech.kernels.precision`'s)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; asking for ``cuda`` without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device "
                           f"(torch {torch.__version__}); use device: auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def use_threads(threads: int | None) -> Iterator[dict[str, int]]:
    """Run with ``threads`` intra-op CPU threads (``None``: leave torch's choice), restored
    afterwards. The inter-op pool is set too when torch still allows it (only before its
    first parallel work). Yields ``{"threads", "interop_threads"}`` in effect, for the log.

    Different thread counts sum floats in a different order, so results differ slightly."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # already started: it keeps its size
            torch.set_num_interop_threads(threads)
    try:
        yield {"threads": torch.get_num_threads(),
               "interop_threads": torch.get_num_interop_threads()}
    finally:
        torch.set_num_threads(before)


def cpu_memory_cache(device: torch.device) -> contextlib.AbstractContextManager[bool]:
    """The compiled cache for large CPU tensors (:mod:`nasspeech.kernels.cpu_cache`) for a
    run on ``device``: on for the CPU (unless ``NASSPEECH_CPU_CACHE=0``), off elsewhere."""
    from nasspeech.kernels.cpu_cache import cached_cpu_memory

    return cached_cpu_memory(None if device.type == "cpu" else False)

