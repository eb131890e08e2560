"""Peak estimates grow with batch size, ops, cells and nodes; order 2 is never below order 1."""

from __future__ import annotations

import itertools

import pytest
from helpers import cnn_space, lstm_space

from nasspeech.config import SearchConfig
from nasspeech.memory import estimate
from nasspeech.memory.batch import BatchModel
from nasspeech.memory.profiles import get_profile
from nasspeech.memory.session import StepTracerSession


def _peak(space, batch=4, order=1):
    est = estimate(space, batch, order=order, max_batch=False)
    return est.peak_allocated_bytes, est.peak_reserved_bytes


def _grows(values: list[tuple[int, int]]) -> bool:
    return all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(values))


@pytest.fixture(scope="module")
def batch_model() -> BatchModel:
    """Sizes vs batch, fitted on traces at 2 and 3 and checked exactly against one at 5."""
    model = BatchModel.fit(StepTracerSession(cnn_space(size=8), SearchConfig(order=1)))
    assert model is not None
    return model


def test_grows_with_batch_size(batch_model: BatchModel) -> None:
    peaks = [batch_model.peak_allocated_lower_bound(b) for b in (1, 2, 4, 8, 16, 64, 256)]
    assert peaks == sorted(peaks) and len(set(peaks)) == len(peaks)
    gpu = get_profile("a100-40gb")
    assert [batch_model.fits(b, gpu) for b in (1, 64, 10**6)] == [True, True, False]
    assert _grows([_peak(cnn_space(size=8), b) for b in (2, 6)])  # traced, not extrapolated


def test_grows_with_ops() -> None:
    ops = ["skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_5x5"]
    assert _grows([_peak(cnn_space(ops=ops[:k])) for k in (2, 3, 4)])


def test_grows_with_cells_and_nodes() -> None:
    assert _grows([_peak(cnn_space(cells=c)) for c in (1, 2, 3)])
    assert _grows([_peak(cnn_space(nodes=n)) for n in (1, 2, 3)])


@pytest.mark.parametrize("make", [lambda: cnn_space(size=8), lambda: lstm_space()])
def test_second_order_is_never_below_first(make) -> None:
    first, second = _peak(make(), 3, order=1), _peak(make(), 3, order=2)
    assert second[0] >= first[0] and second[1] >= first[1]


def test_max_batch_fits_and_five_percent_more_does_not(batch_model: BatchModel) -> None:
    model = batch_model
    from nasspeech.memory.overheads import CUDA_CONTEXT

    gpu = get_profile(CUDA_CONTEXT.value + 60 * 1024**2)  # little room above the context
    best = model.max_batch(gpu)
    assert best >= 8
    assert model.fits(best, gpu)
    assert not model.fits(max(best + 1, int(best * 1.05) + 1), gpu)
