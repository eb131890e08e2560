"""Results tables: per-fold rows, mean ± sample std, formatting, comparison of models."""

from __future__ import annotations

import json
import statistics

import pytest

from nasspeech.reporting import comparison_table, results_table

FOLDS = [
    {"ua": 0.70, "wa": 0.72, "params": 1000},
    {"ua": 0.80, "wa": 0.78, "params": 1002},
    {"ua": 0.75, "wa": 0.81, "params": 1004},
]


def test_mean_and_sample_std():
    _, data = results_table(FOLDS)
    assert data["mean"]["ua"] == pytest.approx(0.75)
    assert data["std"]["ua"] == pytest.approx(0.05)  # sample std (ddof=1): sqrt(0.005/2)
    assert data["std"]["wa"] == pytest.approx(statistics.stdev([0.72, 0.78, 0.81]))
    assert data["mean"]["params"] == pytest.approx(1002) and data["std"]["params"] == 2
    assert data["std_ddof"] == 1 and data["n_folds"] == 3
    assert [f["fold"] for f in data["folds"]] == [1, 2, 3]
    assert data["folds"][0]["params"] == 1000 and isinstance(data["folds"][0]["params"], int)
    json.dumps(data)


def test_markdown_rows():
    text, _ = results_table(FOLDS, title="IEMOCAP")
    lines = text.strip().splitlines()
    assert lines[0] == "**IEMOCAP**"
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| fold | UA (%) | WA (%) | params |"
    assert len(table) == 2 + len(FOLDS) + 1  # header, rule, one per fold, summary
    assert table[2] == "| 1 | 70.00 | 72.00 | 1,000 |"
    assert table[-1] == "| mean ± std | 75.00 ± 5.00 | 77.00 ± 4.58 | 1,002 ± 2 |"


def test_fold_labels_single_fold_and_other_metrics():
    text, data = results_table([{"fold": "Ses01", "ua": 0.5, "loss": 0.123456}],
                               metrics=("ua", "loss"))
    assert data["std"] == {"ua": None, "loss": None}
    assert "| Ses01 | 50.00 | 0.1235 |" in text
    assert "| mean ± std | 50.00 ± n/a | 0.1235 ± n/a |" in text


def test_bad_input():
    with pytest.raises(ValueError, match="at least one fold"):
        results_table([])
    with pytest.raises(ValueError, match="fold 2 has no 'wa'"):
        results_table([{"ua": 0.5, "wa": 0.5, "params": 1}, {"ua": 0.5, "params": 1}])
    with pytest.raises(ValueError, match=r"fold 1: ua=nan is not a finite number"):
        results_table([{"ua": float("nan"), "wa": 0.5, "params": 1}])


def test_comparison_table():
    _, emodarts = results_table(FOLDS)
    text = comparison_table({"emoDARTS": emodarts,
                             "CNN+LSTM-att": {"ua": 0.5355, "params": 208_297}})
    lines = text.strip().splitlines()
    assert lines[0] == "| model | UA (%) | WA (%) | params |"
    assert lines[2] == "| emoDARTS | 75.00 ± 5.00 | 77.00 ± 4.58 | 1,002 ± 2 |"
    assert lines[3] == "| CNN+LSTM-att | 53.55 | – | 208,297 |"
    only_ua = comparison_table({"a": emodarts}, metrics=["ua"], title="t")
    assert only_ua.splitlines()[-1] == "| a | 75.00 ± 5.00 |"
    with pytest.raises(ValueError, match="at least one model"):
        comparison_table({})
    with pytest.raises(TypeError, match="model 'x'"):
        comparison_table({"x": [0.5]})
