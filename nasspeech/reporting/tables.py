"""Result tables like the paper's Tables 4 and 7: per-fold rows and mean ± std.

Conventions: ``ua``, ``wa`` and any metric named ``*acc*`` are fractions, shown in percent
with 2 decimals; ``params`` and other integer-valued metrics are shown as integers with
thousands separators; anything else with 4 decimals. The std is the **sample** standard
deviation (ddof = 1) over folds, as most papers report it; with a single fold it is undefined
(``None`` in the JSON, ``n/a`` in Markdown).
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

PERCENT = frozenset({"ua", "wa"})
STD_DDOF = 1


def _is_percent(metric: str) -> bool:
    return metric in PERCENT or "acc" in metric


def _is_integer(metric: str) -> bool:
    return metric == "params" or metric.endswith("params") or metric == "n"


def format_value(metric: str, value: float | None) -> str:
    """One metric value as shown in a table cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if _is_percent(metric):
        return f"{100 * value:.2f}"
    if _is_integer(metric):
        return f"{round(value):,}"
    return f"{value:.4f}"


def format_mean_std(metric: str, mean: float | None, std: float | None) -> str:
    return f"{format_value(metric, mean)} ± {format_value(metric, std)}"


def _header(metric: str) -> str:
    return f"{metric.upper()} (%)" if _is_percent(metric) else metric


def _value(row: Mapping[str, Any], metric: str, where: str) -> float | int:
    if metric not in row:
        raise ValueError(f"{where} has no {metric!r} (it has {sorted(row)})")
    v = row[metric]
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{where}: {metric}={v!r} is not a finite number")
    return int(v) if isinstance(v, numbers.Integral) else float(v)


def summarise(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, sample std with ddof=1, or None for fewer than 2 values)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]], title: str | None) -> str:
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def results_table(per_fold: Sequence[Mapping[str, Any]],
                  metrics: Sequence[str] = ("ua", "wa", "params"),
                  title: str | None = None) -> tuple[str, dict[str, Any]]:
    """Markdown table, one row per fold plus a ``mean ± std`` row, and the same as a JSON-able
    dict: ``{"title", "metrics", "folds": [{"fold", <metric>: value}], "mean": {...},
    "std": {...}, "std_ddof": 1, "n_folds"}`` (values unscaled: fractions stay fractions).

    A fold dict may carry ``fold`` (its label; 1, 2, ... otherwise)."""
    if len(per_fold) == 0:
        raise ValueError("results_table needs at least one fold")
    metrics = list(metrics)
    if not metrics:
        raise ValueError("results_table needs at least one metric")
    folds = []
    for i, row in enumerate(per_fold):
        label = row.get("fold", i + 1)
        folds.append({"fold": label, **{m: _value(row, m, f"fold {label}") for m in metrics}})
    mean, std = {}, {}
    for m in metrics:
        mean[m], std[m] = summarise([f[m] for f in folds])
    rows = [[str(f["fold"]), *(format_value(m, f[m]) for m in metrics)] for f in folds]
    rows.append(["mean ± std", *(format_mean_std(m, mean[m], std[m]) for m in metrics)])
    text = _markdown(["fold", *map(_header, metrics)], rows, title)
    data = {"title": title, "metrics": metrics, "folds": folds, "mean": mean, "std": std,
            "std_ddof": STD_DDOF, "n_folds": len(folds)}
    return text, data


def _summary_cell(name: str, summary: Mapping[str, Any], metric: str) -> str:
    if "mean" in summary and isinstance(summary["mean"], Mapping):
        if metric not in summary["mean"]:
            return "–"
        return format_mean_std(metric, summary["mean"][metric],
                               (summary.get("std") or {}).get(metric))
    if metric not in summary:
        return "–"
    return format_value(metric, _value(summary, metric, f"model {name!r}"))


def _metrics_of(summary: Mapping[str, Any]) -> list[str]:
    if "mean" in summary and isinstance(summary["mean"], Mapping):
        return list(summary.get("metrics") or summary["mean"])
    return [k for k, v in summary.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)]


def comparison_table(rows: Mapping[str, Mapping[str, Any]],
                     metrics: Sequence[str] | None = None, title: str | None = None) -> str:
    """Markdown table, one row per model (e.g. emoDARTS vs the CNN+LSTM-att baseline).

    Each value is either the dict :func:`results_table` returns (cells show mean ± std) or a
    flat ``{metric: value}`` of a single run. Columns: ``metrics``, or every metric found, in
    order of first appearance; a model lacking a metric shows ``–``."""
    if not rows:
        raise ValueError("comparison_table needs at least one model")
    for name, summary in rows.items():
        if not isinstance(summary, Mapping):
            raise TypeError(f"model {name!r}: expected a results_table dict or "
                            f"{{metric: value}}, got {type(summary).__name__}")
    if metrics is None:
        metrics = list(dict.fromkeys(m for s in rows.values() for m in _metrics_of(s)))
    if not metrics:
        raise ValueError("comparison_table found no metrics in the rows")
    body = [[str(name), *(_summary_cell(name, s, m) for m in metrics)] for name, s in rows.items()]
    return _markdown(["model", *map(_header, metrics)], body, title)
