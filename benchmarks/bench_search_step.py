"""pytest-benchmark view of the search-step benchmarks (pytest benchmarks/bench_search_step.py).

Guards ratios, not absolute times (issue #16): both sides of a ratio are measured in one
process, steps alternating, at one thread, in process CPU time (steady on a machine shared
with other jobs), on the yardstick's supernet at a quarter of its input (``cnn-small``), so
that they run in seconds. What they guard:

- second order <= 3x the first-order step, both inside the CPU tensor cache the runs use
  (nasspeech.kernels.cpu_cache). Before the second order kept the weights' layout
  (channels-last), it cost 5x. The issue's target of 2.6x is about the yardstick
  (docs/search-step.md has what it measures); at this quarter-size input the ratio is higher
  (2.7-2.8x), so 3x is asserted.
- the CPU tensor cache lowers the yardstick's peak RSS: second order to <= 0.85x, first order
  to <= 0.92x of PyTorch's allocator (0.71x and 0.83x measured), fresh processes (about
  3 minutes; glibc's fragmentation needs the full-size step to show).
- ``search.recompute_depthwise`` on the yardstick: peak RSS <= 0.8x, CPU time <= 1.25x of the
  step that keeps the depthwise outputs (0.71x and 1.12x measured), fresh processes.

The full-size comparison with another checkout (``search_step_ratios.py``; several minutes)
runs with ``-m slow`` and ``NASSPEECH_BENCH_BASE=<checkout of d26f8ac>``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from search_step import run_context, setup

SECOND_OVER_FIRST_MAX = 3.0
CACHE_RSS_MAX = {1: 0.92, 2: 0.85}  # peak RSS with the cache / without, per order


def alternating_step_cpu(setting: str, rounds: int = 3) -> dict[int, float]:
    """Median process CPU time of a first- and a second-order search step on one supernet,
    the two orders alternating, at one thread."""
    from nasspeech.search import Architect, search_step

    threads = torch.get_num_threads()
    try:
        net, first, opt, train, val = setup(setting, 1, 1)
        architects = {1: first, 2: Architect(net, order=2)}
        times: dict[int, list[float]] = {1: [], 2: []}
        with run_context():  # as in search runs
            for r in range(rounds + 1):  # round 0 warms both up
                for order in ((1, 2) if r % 2 else (2, 1)):
                    t0 = time.process_time()
                    search_step(net, architects[order], opt, train, val, lr=0.025)
                    if r:
                        times[order].append(time.process_time() - t0)
        return {order: statistics.median(t) for order, t in times.items()}
    finally:
        torch.set_num_threads(threads)


def test_second_order_costs_at_most_3x_first_order(benchmark):
    result = benchmark.pedantic(alternating_step_cpu, args=("cnn-small",), rounds=1,
                                iterations=1)
    ratio = result[2] / result[1]
    benchmark.extra_info.update(first_s=result[1], second_s=result[2], ratio=ratio)
    print(result, f"second/first {ratio:.2f}")
    assert ratio <= SECOND_OVER_FIRST_MAX, result


@pytest.mark.parametrize("order", [2, 1])
def test_cpu_cache_lowers_the_yardsticks_peak_rss(benchmark, order):
    from search_step import measure

    from nasspeech.kernels import native

    if native.native_ops() is None:
        pytest.skip("compiled kernels unavailable here")

    def both() -> dict[str, dict]:
        return {flag: measure("cnn", order, steps=1, warmup=1, threads=1,
                              env={"NASSPEECH_CPU_CACHE": flag}) for flag in ("0", "1")}

    rows = benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = rows["1"]["peak_rss_gb"] / rows["0"]["peak_rss_gb"]
    benchmark.extra_info.update(
        rss_gb_cache=rows["1"]["peak_rss_gb"], rss_gb_pytorch=rows["0"]["peak_rss_gb"],
        step_s_cache=rows["1"]["step_s_median"], step_s_pytorch=rows["0"]["step_s_median"],
        ratio=ratio)
    print({k: (r["peak_rss_gb"], r["step_s_median"]) for k, r in rows.items()},
          f"RSS with/without cache {ratio:.2f}")
    assert ratio <= CACHE_RSS_MAX[order], rows


def test_recomputed_depthwise_outputs_trade_time_for_memory(benchmark):
    """``search.recompute_depthwise`` on the yardstick's first order, fresh processes, both
    with the CPU tensor cache: peak RSS <= 0.8x (0.71x measured), CPU time <= 1.25x (1.12x)."""
    from search_step import measure

    def both() -> dict[bool, dict]:
        return {rc: measure("cnn", 1, steps=2, warmup=1, threads=1, recompute=rc)
                for rc in (False, True)}

    rows = benchmark.pedantic(both, rounds=1, iterations=1)
    rss = rows[True]["peak_rss_gb"] / rows[False]["peak_rss_gb"]
    cpu = rows[True]["cpu_s_median"] / rows[False]["cpu_s_median"]
    benchmark.extra_info.update(rss_ratio=rss, cpu_ratio=cpu,
                                rss_gb={str(k): r["peak_rss_gb"] for k, r in rows.items()})
    print({k: (r["peak_rss_gb"], r["cpu_s_median"]) for k, r in rows.items()},
          f"RSS {rss:.2f}x, CPU time {cpu:.2f}x")
    assert rss <= 0.8 and cpu <= 1.25, rows


@pytest.mark.slow
def test_yardstick_ratios_against_base(benchmark):
    """The issue's measurement: the yardstick (cnn setting), this checkout against
    ``NASSPEECH_BENCH_BASE``, alternating fresh processes."""
    base = os.environ.get("NASSPEECH_BENCH_BASE")
    if not base:
        pytest.skip("set NASSPEECH_BENCH_BASE to a checkout of d26f8ac")
    from search_step_ratios import check_tree, run

    result = benchmark.pedantic(run, args=("cnn", check_tree(Path(base)), 1, 2, 1,
                                           os.cpu_count() or 1), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in result.items() if k != "rows"})
    print({k: v for k, v in result.items() if k != "rows"})
    assert result["wall"]["second_over_first"] <= SECOND_OVER_FIRST_MAX, result
