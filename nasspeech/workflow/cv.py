"""``nasspeech cv``: per fold, search -> derive -> retrain -> test, then a results table
(per fold and mean ± std, Markdown + JSON), optionally beside baselines.

The work is split into jobs (:mod:`nasspeech.workflow.jobs`: a fold's search, its retraining,
each baseline) that an executor runs: in this process (the default) or as Ray tasks
(:mod:`nasspeech.workflow.executors.ray`). Both write the same run directory and tables.
A resumed cv skips the jobs that finished and continues an interrupted search or training
from its checkpoint."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasspeech.config import RunConfig
from nasspeech.io import atomic_write
from nasspeech.workflow.datasets import RunData
from nasspeech.workflow.errors import WorkflowError
from nasspeech.workflow.executors import Executor
from nasspeech.workflow.jobs import SEARCHED, Job, Outcome, Plan, Scope, check_outcomes
from nasspeech.workflow.rundir import open_run_dir, write_json
from nasspeech.workflow.train import check_model_name


@dataclass
class CVResult:
    run_dir: Path
    per_model: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    markdown: str = ""
    #: Wall seconds of each job (by its key, e.g. ``fold_0/search``) in this run.
    job_seconds: dict[str, float] = field(default_factory=dict)


def _executor(executor: Executor | None) -> Executor:
    from nasspeech.workflow.executors.serial import SerialExecutor

    return executor if executor is not None else SerialExecutor()


def run_cv(
    config: RunConfig,
    data: RunData,
    out_dir: str | Path,
    folds: list[int] | None = None,
    baselines: tuple[str, ...] = (),
    progress: bool = True,
    resume: bool = False,
    restart: bool = False,
    executor: Executor | None = None,
) -> CVResult:
    """Run the protocol on ``folds`` (default: all) for the searched model and ``baselines``.

    ``resume`` skips what finished and continues what was interrupted; ``restart`` deletes
    ``out_dir``'s contents first. ``executor`` runs the jobs (default: one after the other in
    this process). The tables are in the result (the caller prints them)."""
    folds = list(range(len(data.folds))) if folds is None else list(folds)
    for k in folds:
        data.fold(k)
    for name in baselines:
        check_model_name(name)
    executor = _executor(executor)
    with executor:  # connected (and its settings checked) before the run directory exists
        config = executor.prepare(config)
        with open_run_dir(out_dir, resume, restart) as run_dir:
            return _cv(config, data, run_dir, folds, tuple(baselines), executor, resume,
                       progress)


def _cv(config: RunConfig, data: RunData, run_dir: Path, folds: list[int],
        baselines: tuple[str, ...], executor: Executor, resume: bool,
        progress: bool) -> CVResult:
    config.save(run_dir / "config.yaml")
    scope = Scope("", config, data, folds, baselines)
    outcomes = executor.run(Plan(run_dir, [scope], resume), progress)
    check_outcomes(outcomes)
    return write_results(scope, run_dir, outcomes)


def write_results(scope: Scope, run_dir: Path, outcomes: dict[Job, Outcome]) -> CVResult:
    """``results.md`` and ``results.json`` of a scope whose jobs all finished."""
    from nasspeech.reporting import comparison_table, results_table

    result = CVResult(run_dir, job_seconds={job.key: o.seconds for job, o in outcomes.items()
                                            if job.scope == scope.name})
    for model in scope.models:
        result.per_model[model] = [outcomes[Job(scope.name, k, model)].value["metrics"]
                                   for k in scope.folds]
    sections = []
    for name, rows in result.per_model.items():
        md, table = results_table(rows, title=f"{scope.config.name}: {name}")
        result.tables[name] = table
        sections.append(md)
    if len(result.per_model) > 1:
        sections.append(comparison_table(result.tables, title="comparison"))
    result.markdown = "\n\n".join(sections) + "\n"
    atomic_write(run_dir / "results.md", result.markdown)
    write_json(run_dir / "results.json", {"folds": scope.folds, "models": result.per_model,
                                          "tables": result.tables})
    return result


#: The folder (under a scopes run) of the baselines trained beside the scopes.
BASELINES = "baselines"


def _load_data(config: RunConfig, loaded: dict[str, RunData], progress: bool) -> RunData:
    """The run data of ``config``, loaded once per distinct ``data:`` section."""
    from nasspeech.workflow.datasets import load_run_data

    key = json.dumps(config.data.model_dump(mode="json"), sort_keys=True)
    if key not in loaded:
        loaded[key] = load_run_data(config, progress=progress)
    return loaded[key]


def run_scopes(
    scope_configs: list[Path],
    out_dir: str | Path,
    folds: list[int] | None = None,
    progress: bool = True,
    resume: bool = False,
    restart: bool = False,
    threads: int | None = None,
    executor: Executor | None = None,
    baselines: tuple[str, ...] = (),
    baseline_config: RunConfig | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Cross-validate each scope config (Table 6) and draw the Fig. 7 scatter
    (``threads`` overrides each config's). ``baselines`` are trained once per fold with
    ``baseline_config``, into ``out_dir/baselines``. All the jobs go to ``executor`` at once."""
    from nasspeech.plots import plot_scope_scatter

    if not scope_configs:
        raise ValueError("no scope configs given")
    names = [Path(path).stem for path in scope_configs]
    if baselines:
        if baseline_config is None:
            raise ValueError("baselines need a baseline_config")
        if BASELINES in names:
            raise WorkflowError(f"a scope config named {BASELINES}.yaml would share its "
                                "folder with the baselines; rename it")
        for name in baselines:
            check_model_name(name)
    configs = [RunConfig.load(path) for path in scope_configs]  # all valid before any runs
    if baselines:
        configs.append(baseline_config)
        names.append(BASELINES)
    if threads is not None:
        configs = [c.model_copy(update={"threads": threads}) for c in configs]
    executor = _executor(executor)
    with executor, contextlib.ExitStack() as scope_dirs:
        configs = [executor.prepare(c) for c in configs]
        run_dir = scope_dirs.enter_context(open_run_dir(out_dir, resume, restart))
        scopes, loaded = [], {}
        for name, config in zip(names, configs):
            data = _load_data(config, loaded, progress)
            chosen = list(range(len(data.folds))) if folds is None else list(folds)
            for k in chosen:
                data.fold(k)
            scope_dir = scope_dirs.enter_context(open_run_dir(run_dir / name, resume, False))
            config.save(scope_dir / "config.yaml")
            only_baselines = bool(baselines) and name == BASELINES
            scopes.append(Scope(name, config, data, chosen, baselines if only_baselines else (),
                                search=not only_baselines))
        outcomes = executor.run(Plan(run_dir, scopes, resume), progress)
        check_outcomes(outcomes)
        rows = []
        for scope in scopes:
            tables = write_results(scope, run_dir / scope.name, outcomes).tables
            if not scope.search:
                continue
            table = tables[SEARCHED]
            std = table["std"]["ua"]
            rows.append({"name": scope.name, "ua_mean": table["mean"]["ua"],
                         "ua_std": 0.0 if std is None else std,
                         "params": table["mean"]["params"]})
        write_json(run_dir / "scopes.json", rows)
        return rows, plot_scope_scatter(rows, run_dir / "scopes.png", title="search scopes")
