"""Search scopes compared (emoDARTS Fig. 7): mean UA against its std over folds."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasspeech.plots._common import plt, save

_KEYS = ("name", "ua_mean", "ua_std", "params")
_MAX_AREA, _MIN_AREA = 1500.0, 30.0


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    if len(rows) == 0:
        raise ValueError("no scopes to plot: rows is empty")
    for i, row in enumerate(rows):
        missing = [k for k in _KEYS if k not in row]
        if missing:
            raise ValueError(f"scope row {i} ({row.get('name', '?')!r}) lacks {missing}")
        for k in ("ua_mean", "ua_std"):
            v = row[k]
            if not isinstance(v, numbers.Real) or not 0.0 <= v <= 1.0:
                raise ValueError(f"scope {row['name']!r}: {k}={v!r} must be a fraction in "
                                 "[0, 1] (as classification_report gives it), not percent")
        if not isinstance(row["params"], numbers.Real) or row["params"] < 0:
            raise ValueError(f"scope {row['name']!r}: params={row['params']!r} must be >= 0")


def plot_scope_scatter(rows: Sequence[Mapping[str, Any]], path: str | Path,
                       title: str | None = None) -> Path:
    """One labelled point per scope, as in the paper's Fig. 7: x = std of UA (%), y = mean UA
    (%) over folds (best = top left); marker *area* proportional to the parameter count (the
    largest model gets the largest marker, with a floor so tiny models stay visible).

    ``rows``: dicts with ``name``, ``ua_mean``, ``ua_std`` (fractions) and ``params``."""
    _check_rows(rows)
    x = np.array([r["ua_std"] for r in rows], dtype=float) * 100
    y = np.array([r["ua_mean"] for r in rows], dtype=float) * 100
    params = np.array([r["params"] for r in rows], dtype=float)
    area = np.maximum(_MAX_AREA * params / max(params.max(), 1.0), _MIN_AREA)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = plt.cm.tab10(np.arange(len(rows)) % 10)
    ax.scatter(x, y, s=area, c=colours, alpha=0.6, edgecolors="black", linewidths=0.6)
    for xi, yi, r in zip(x, y, rows):
        ax.annotate(f"{r['name']}\n({int(r['params']):,} params)", (xi, yi), fontsize=8,
                    xytext=(6, 6), textcoords="offset points")
    pad_x, pad_y = max(np.ptp(x) * 0.25, 1.0), max(np.ptp(y) * 0.25, 2.0)
    ax.set_xlim(max(x.min() - pad_x, 0), x.max() + pad_x)
    ax.set_ylim(y.min() - pad_y, y.max() + pad_y)
    ax.set_xlabel("std of UA over folds (%)")
    ax.set_ylabel("mean UA over folds (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "search scopes (marker area ∝ parameters; best = top left)")
    return save(fig, path)
