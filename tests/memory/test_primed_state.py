"""Starting from a primed steady state traces exactly what a real warm-up step leads to."""

from __future__ import annotations

import pytest
from helpers import cnn_space, fake_trace, lstm_space

from nasspeech.config import SearchConfig
from nasspeech.memory.session import StepTracerSession


@pytest.mark.parametrize("make", [lambda: cnn_space(size=8), lambda: lstm_space()])
def test_primed_trace_equals_warmed_up_trace(make) -> None:
    primed = StepTracerSession(make(), SearchConfig(order=2)).trace(3)
    warmed = fake_trace(make(), 3, 2, target="cuda")
    assert primed.meta["primed"] is True
    assert primed.events == warmed.events and primed.initial == warmed.initial
    assert [(a.nbytes, a.category, a.component, a.op) for a in primed.allocs] == [
        (a.nbytes, a.category, a.component, a.op) for a in warmed.allocs
    ]
