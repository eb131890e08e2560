"""The GPU session's report (``benchmarks/gpu_report.py``): errors, targets, the search-budget
arithmetic, and that it reports only what was measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu_report


def _compare(name: str, group: str, pa: int, ma: int, pr: int, mr: int) -> dict:
    return {"kind": "compare", "name": name, "group": group, "batch": 8, "order": 2,
            "pred_allocated": pa, "measured_allocated": ma, "pred_reserved": pr,
            "measured_reserved": mr, "estimate_s": 1.0, "step_s": 0.5}


def test_errors_and_targets(tmp_path: Path) -> None:
    records = [
        {"kind": "setup", "total_memory": 10, "context_bytes": 5},
        _compare("a", "g1", 101, 100, 1000, 1000),   # +1 %, 0 %
        _compare("b", "g1", 97, 100, 1100, 1000),    # -3 %, +10 %
        _compare("c", "g2", 100, 100, 960, 1000),    # 0 %, -4 %
        {"kind": "compare", "name": "d", "group": "g2", "batch": 8, "order": 1,
         "error": "OutOfMemoryError: boom"},
        {"kind": "max_batch", "order": 2, "part": "check", "profile": "a100-40gb",
         "predicted": 62, "runs": True, "plus5": 66, "plus5_runs": False,
         "real_max_at_least": 64, "real_max_below": 65, "exact": True},
    ]
    (tmp_path / "validate.json").write_text(json.dumps(records))
    text = gpu_report.report(tmp_path)
    # median |error| over a, b, c: allocated {1, 3, 0} -> 1; reserved {0, 10, 4} -> 4
    assert "peak allocated **1.00 %** (meets the 2 % target; worst 3.00 %, b)" in text
    assert "peak reserved **4.00 %** (meets the 5 % target; worst 10.00 %, b)" in text
    assert "| d | g2 | 8 | 1 | failed: OutOfMemoryError: boom" in text
    assert "| 2 | A100-40GB (emulated) | 62 | True | 66 | False | 64 |" in text
    assert "No predicted largest batch ran out of memory." in text
    for part in ("## 2. Device constants measured", "## 3. Step times",
                 "## 4. The test suite on CUDA"):
        assert text.split(part, 1)[1].lstrip().startswith("Not run."), part


def test_a_predicted_batch_that_ran_out_of_memory_is_reported(tmp_path: Path) -> None:
    (tmp_path / "validate.json").write_text(json.dumps([
        {"kind": "max_batch", "order": 2, "part": "check", "profile": "this-device",
         "predicted": 215, "runs": False, "plus5": 226, "plus5_runs": False}]))
    assert "**1 predicted largest batch(es) ran out of memory.**" in gpu_report.report(tmp_path)


def test_dry_run_records_are_refused(tmp_path: Path) -> None:
    (tmp_path / "timing.json").write_text(json.dumps([
        {"what": "search", "space": "emodarts", "batch": 2, "order": 2, "precision": "fp32",
         "dry_run": True, "median_s": 17.0}]))
    with pytest.raises(ValueError, match="dry-run"):
        gpu_report.report(tmp_path)


def test_steps_per_epoch_merge_a_last_single_sample() -> None:
    assert gpu_report.steps_per_epoch(639, 64) == 10
    assert gpu_report.steps_per_epoch(641, 64) == 10  # 10 x 64 + 1: the 1 joins the last
    assert gpu_report.steps_per_epoch(642, 64) == 11
    assert gpu_report.steps_per_epoch(1, 64) == 1


def test_search_budget_arithmetic() -> None:
    # 2280 clips: training part 1824 per fold, search set 1277 (alpha 638, weights 639:
    # 10 steps), training set 547 (9 steps)
    b = gpu_report.budget(search_s=2.0, eval_s=0.1, retrain_s=0.05)
    assert b["search_steps_per_epoch"] == 10 and b["retrain_steps_per_epoch"] == 9
    assert b["search_h"] == pytest.approx(5 * 300 * (10 * 2.0 + 10 * 0.1) / 3600)
    assert b["retrain_h"] == pytest.approx(5 * 300 * 9 * 0.05 / 3600)


def test_a_later_run_replaces_a_configuration_and_what_it_skipped(tmp_path: Path) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    (first / "validate.json").write_text(json.dumps([
        _compare("a", "g", 100, 100, 100, 100),
        _compare("b", "g", 100, 900, 100, 900),  # a bad measurement, measured again
        {"kind": "skipped", "name": "c", "why": "budget"}]))
    (second / "validate.json").write_text(json.dumps([
        _compare("b", "g", 100, 102, 100, 100), _compare("c", "g", 100, 98, 100, 100)]))
    records = gpu_report.merged_validate([first, second])
    assert [(r["name"], r["run"]) for r in records] == [("a", 1), ("b", 2), ("c", 2)]
    text = gpu_report.report([first, second])
    assert "| b | g | 8 | 2 | 0.0 | 0.0 | -1.96 |" in text and "Not measured" not in text


def test_what_follows_a_step_that_ran_out_of_memory_is_not_used() -> None:
    check = {"kind": "max_batch", "order": 2, "part": "check", "profile": "a100-40gb",
             "predicted": 62, "runs": True, "plus5": 66, "plus5_runs": False,
             "real_max_at_least": 64, "real_max_below": 65, "exact": True,
             "tried": [[64, False]]}
    clean = {**_compare("clean", "g", 1, 1, 1, 1), "allocated_at_start": 68_157_440}
    full = {**_compare("full", "g", 1, 1, 1, 1), "allocated_at_start": 10**11}
    old_harness = _compare("old", "g", 1, 1, 1, 1)  # no allocated_at_start
    before = _compare("before", "g", 1, 1, 1, 1)
    records = [before, check, clean, full, old_harness, dict(check)]
    gpu_report.mark_validity(records)
    assert [("invalid" in r) for r in records] == [False, False, False, True, True, True]
    assert records[1]["bisection_invalid"] is True  # bisected after the +5 % step failed
