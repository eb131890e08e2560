"""pytest-benchmark view of the search-step benchmark (run: pytest benchmarks/bench_search_step.py).

Targets from the cells/Architect issue for the CNN-only setting (reference code on this
machine type: about 21 s and 10.6 GB peak RSS): <= 10 s per first-order step, <= 7 GB.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from search_step import measure  # noqa: E402


@pytest.mark.parametrize("setting,order", [("cnn", 1), ("emodarts-small", 1),
                                           ("emodarts-small", 2)])
def test_search_step(benchmark, setting, order):
    result = benchmark.pedantic(measure, args=(setting, order), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(result)
    if setting == "cnn":
        assert result["step_s_median"] <= 10.0, result
        assert result["peak_rss_gb"] <= 7.0, result
