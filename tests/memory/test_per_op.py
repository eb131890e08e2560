"""Per-op marginal memory: the fast replay agrees with re-tracing on which ops cost most."""

from __future__ import annotations

from helpers import cnn_space

from nasspeech.config import SearchConfig
from nasspeech.memory.per_op import per_op_costs


def test_fast_per_op_costs_track_exact_retraces() -> None:
    space = cnn_space(ops=("max_pool_3x3", "sep_conv_3x3", "skip_connect", "none"), size=8)
    search = SearchConfig(order=1)
    fast = per_op_costs(space, 4, search=search)
    exact = per_op_costs(space, 4, search=search, exact=True)
    assert [c.op for c in fast] == [c.op for c in exact]  # same ranking, "none" left out
    assert {c.op for c in fast} == {"max_pool_3x3", "sep_conv_3x3", "skip_connect"}
    for f, e in zip(fast, exact):
        assert 0 < f.saves_allocated_bytes <= e.saves_allocated_bytes
        assert f.saves_allocated_bytes >= 0.6 * e.saves_allocated_bytes
