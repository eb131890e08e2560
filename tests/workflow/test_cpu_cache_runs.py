"""Search and training runs on the CPU work with the compiled tensor cache switched on
(nasspeech.kernels.cpu_cache), and leave it off when they end, also after an error."""

from __future__ import annotations

import pytest

import nasspeech.workflow.search as S
import nasspeech.workflow.train as T
from nasspeech.kernels import native
from nasspeech.kernels.cpu_cache import cpu_cache_stats

pytestmark = pytest.mark.skipif(native.native_ops() is None,
                                reason="compiled kernels unavailable here")


def _spy(monkeypatch, module, name: str, seen: dict) -> None:
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        seen[name] = cpu_cache_stats().enabled
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_search_and_train_run_inside_the_cache(tiny, tmp_path, monkeypatch):
    config, data = tiny
    seen: dict[str, bool] = {}
    _spy(monkeypatch, S, "_search", seen)
    _spy(monkeypatch, T, "_train", seen)
    found = S.run_search(config, data, 0, tmp_path / "search", progress=False, stop_after=1)
    T.run_train(config, data, 0, tmp_path / "train", genotype=found.genotype, progress=False)
    assert seen == {"_search": True, "_train": True}
    assert not cpu_cache_stats().enabled and cpu_cache_stats().cached == 0


def test_environment_switch_and_errors_leave_it_off(tiny, tmp_path, monkeypatch):
    config, data = tiny
    seen: dict[str, bool] = {}
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "0")
    _spy(monkeypatch, S, "_search", seen)
    S.run_search(config, data, 0, tmp_path / "off", progress=False, stop_after=1)
    assert seen == {"_search": False}
    monkeypatch.setenv("NASSPEECH_CPU_CACHE", "1")

    def boom(*args, **kwargs):
        assert cpu_cache_stats().enabled
        raise RuntimeError("boom")

    monkeypatch.setattr(T, "_train", boom)
    with pytest.raises(RuntimeError, match="boom"):
        T.run_train(config, data, 0, tmp_path / "train", model_name="cnn", progress=False)
    assert not cpu_cache_stats().enabled
