"""One BLAS thread for feature arithmetic, whichever process or caller runs it.

OpenBLAS/MKL split a matrix product differently at different thread counts, so the same
clip's features could differ in the last bits between a serial run (all cores) and a worker
process (one thread each), while the cache key does not (and must not) depend on the worker
count. Every feature computation therefore runs under :func:`one_blas_thread`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_controller: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit the loaded BLAS libraries to one thread inside the block (restored after).

    The libraries are scanned once (the scan costs milliseconds; a limit then costs
    microseconds); call this after numpy/scipy/librosa are imported.
    """
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield
