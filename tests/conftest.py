"""Shared test setup: CPU only, deterministic, one intra-op thread by default.

Test tensors are tiny: one thread is faster for them than two threads spinning against each
other, and it keeps the suite's timing steady on a busy 2-core machine.
``NASSPEECH_TEST_THREADS=2 python -m pytest`` runs the suite at another thread count (oneDNN
picks different kernels per thread count, so both are checked before a change lands)."""

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(int(os.environ.get("NASSPEECH_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("-m") and "slow" in config.getoption("-m")
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
        if item.get_closest_marker("slow") and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with -m slow"))
