"""``nasspeech cv``: per fold, search -> derive -> retrain -> test, then a results table
(per fold and mean ± std, Markdown + JSON), optionally beside baselines.

A resumed cv skips the folds and models that finished and continues an interrupted search
or training from its checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasspeech.config import RunConfig
from nasspeech.io import atomic_write
from nasspeech.workflow.datasets import RunData
from nasspeech.workflow.rundir import open_run_dir, write_json
from nasspeech.workflow.search import run_search
from nasspeech.workflow.train import check_model_name, run_train, without_auxiliary


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
    resume: bool = False,
    restart: bool = False,
) -> CVResult:
    """Run the protocol on ``folds`` (default: all) for the searched model and ``baselines``.

    ``resume`` skips what finished and continues what was interrupted; ``restart`` deletes
    ``out_dir``'s contents first. The tables are in the result (the caller prints them)."""
    folds = list(range(len(data.folds))) if folds is None else list(folds)
    for k in folds:
        data.fold(k)
    for name in baselines:
        check_model_name(name)
    with open_run_dir(out_dir, resume, restart) as run_dir:
        config.save(run_dir / "config.yaml")
        return _cv(config, data, run_dir, folds, baselines, progress, resume)


def _cv(config: RunConfig, data: RunData, run_dir: Path, folds: list[int],
        baselines: tuple[str, ...], progress: bool, resume: bool) -> CVResult:
    from nasspeech.reporting import comparison_table, results_table

    result = CVResult(run_dir)
    searched: list[dict[str, Any]] = []
    for k in folds:
        search = run_search(config, data, k, run_dir / f"fold_{k}" / "search", resume=resume,
                            progress=progress)
        trained = run_train(config, data, k, run_dir / f"fold_{k}" / "train",
                            genotype=search.genotype, model_name="searched", progress=progress,
                            resume=resume)
        searched.append(trained.metrics)
        for name in baselines:  # no auxiliary head: it belongs to searched models
            res = run_train(without_auxiliary(config), data, k, run_dir / f"fold_{k}" / name,
                            model_name=name, progress=progress, resume=resume)
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
    atomic_write(run_dir / "results.md", result.markdown)
    write_json(run_dir / "results.json", {"folds": folds, "models": result.per_model,
                                          "tables": result.tables})
    return result


def run_scopes(
    scope_configs: list[Path],
    out_dir: str | Path,
    folds: list[int] | None = None,
    progress: bool = True,
    resume: bool = False,
    restart: bool = False,
    threads: int | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Cross-validate each scope config (Table 6) and draw the Fig. 7 scatter
    (``threads`` overrides each config's)."""
    from nasspeech.plots import plot_scope_scatter
    from nasspeech.workflow.datasets import load_run_data

    if not scope_configs:
        raise ValueError("no scope configs given")
    configs = [RunConfig.load(path) for path in scope_configs]  # all valid before any runs
    if threads is not None:
        configs = [c.model_copy(update={"threads": threads}) for c in configs]
    with open_run_dir(out_dir, resume, restart) as run_dir:
        rows = []
        for path, config in zip(scope_configs, configs):
            data = load_run_data(config, progress=progress)
            res = run_cv(config, data, run_dir / Path(path).stem, folds=folds,
                         progress=progress, resume=resume)
            table = res.tables["searched"]
            std = table["std"]["ua"]
            rows.append({"name": Path(path).stem, "ua_mean": table["mean"]["ua"],
                         "ua_std": 0.0 if std is None else std,
                         "params": table["mean"]["params"]})
        write_json(run_dir / "scopes.json", rows)
        return rows, plot_scope_scatter(rows, run_dir / "scopes.png", title="search scopes")
