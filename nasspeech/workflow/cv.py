"""``nasspeech cv``: per fold, search -> derive -> retrain -> test, then a results table
(per fold and mean ± std, Markdown + JSON), optionally beside baselines."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasspeech.config import RunConfig
from nasspeech.workflow.datasets import RunData
from nasspeech.workflow.rundir import prepare_run_dir, write_json
from nasspeech.workflow.search import run_search
from nasspeech.workflow.train import run_train


@dataclass
class CVResult:
    run_dir: Path
    per_model: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    markdown: str = ""


def run_cv(
    config: RunConfig,
    data: RunData,
    out_dir: str | Path,
    folds: list[int] | None = None,
    baselines: tuple[str, ...] = (),
    progress: bool = True,
) -> CVResult:
    """Run the protocol on ``folds`` (default: all) for the searched model and ``baselines``."""
    from nasspeech.reporting import comparison_table, results_table

    run_dir = prepare_run_dir(out_dir)
    folds = list(range(len(data.folds))) if folds is None else folds
    result = CVResult(run_dir)
    searched: list[dict[str, Any]] = []
    for k in folds:
        search = run_search(config, data, k, run_dir / f"fold_{k}" / "search", progress=progress)
        trained = run_train(config, data, k, run_dir / f"fold_{k}" / "train",
                            genotype=search.genotype, model_name="searched", progress=progress)
        searched.append(trained.metrics)
        for name in baselines:
            res = run_train(config, data, k, run_dir / f"fold_{k}" / name, model_name=name,
                            progress=progress)
            result.per_model.setdefault(name, []).append(res.metrics)
    result.per_model = {"searched": searched, **result.per_model}
    sections = []
    for name, rows in result.per_model.items():
        md, table = results_table(rows, title=f"{config.name}: {name}")
        result.tables[name] = table
        sections.append(md)
    if len(result.per_model) > 1:
        sections.append(comparison_table(result.tables, title="comparison"))
    result.markdown = "\n\n".join(sections) + "\n"
    (run_dir / "results.md").write_text(result.markdown)
    write_json(run_dir / "results.json", {"folds": folds, "models": result.per_model,
                                          "tables": result.tables})
    if progress:
        print(result.markdown, file=sys.stderr)
    return result


def run_scopes(
    scope_configs: list[Path],
    out_dir: str | Path,
    folds: list[int] | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], Path]:
    """Cross-validate each scope config (Table 6) and draw the Fig. 7 scatter."""
    from nasspeech.plots import plot_scope_scatter
    from nasspeech.workflow.datasets import load_run_data

    if not scope_configs:
        raise ValueError("no scope configs given")
    run_dir = prepare_run_dir(out_dir)
    rows = []
    for path in scope_configs:
        config = RunConfig.load(path)
        data = load_run_data(config, progress=progress)
        res = run_cv(config, data, run_dir / Path(path).stem, folds=folds, progress=progress)
        table = res.tables["searched"]
        std = table["std"]["ua"]
        rows.append({"name": Path(path).stem, "ua_mean": table["mean"]["ua"],
                     "ua_std": 0.0 if std is None else std, "params": table["mean"]["params"]})
    write_json(run_dir / "scopes.json", rows)
    return rows, plot_scope_scatter(rows, run_dir / "scopes.png", title="search scopes")
