"""Search and training runs on the CPU work with the compiled tensor cache switched on
(nasspeech.kernels.cpu_cache), and leave it off when they end, also after an error."""

from __future__ import annotations

import pytest
from tiny_runs import probe_calls

import nasspeech.workflow.search as S
import nasspeech.workflow.train as T
from nasspeech.kernels import native
from nasspeech.kernels.cpu_cache import cpu_cache_stats

pytestmark = pytest.mark.skipif(native.native_ops() is None,
                                reason="compiled kernels unavailable here")


def _enabled() -> bool:
    return cpu_cache_stats().enabled


def test_search_and_train_run_inside_the_cache(tiny, tmp_path, monkeypatch):
    config, data = tiny
    in_search = probe_calls(monkeypatch, S, "_search", _enabled)
    in_train = probe_calls(monkeypatch, T, "_train", _enabled)
    found = S.run_search(config, data, 0, tmp_path / "search", progress=False, stop_after=1)
    T.run_train(config, data, 0, tmp_path / "train", genotype=found.genotype, progress=False)
    assert in_search == [True] and in_train == [True]
    assert not cpu_cache_stats().enabled and cpu_cache_stats().cached == 0


def test_environment_switch_and_errors_leave_it_off(tiny, tmp_path, monkeypatch):
    config, data = tiny
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "0")
    seen = probe_calls(monkeypatch, S, "_search", _enabled)
    S.run_search(config, data, 0, tmp_path / "off", progress=False, stop_after=1)
    assert seen == [False]
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "1")

    def boom(*args, **kwargs):
        assert cpu_cache_stats().enabled
        raise RuntimeError("boom")

    monkeypatch.setattr(T, "_train", boom)
    with pytest.raises(RuntimeError, match="boom"):
        T.run_train(config, data, 0, tmp_path / "train", model_name="cnn", progress=False)
    assert not cpu_cache_stats().enabled
