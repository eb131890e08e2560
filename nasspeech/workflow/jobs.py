"""The jobs of a cross-validation, shared by every executor.

A cv (or a set of search scopes) is split into jobs, one per (scope, fold, model): the search
of a fold, the retraining of the genotype it found (which needs that search) and each
baseline. :func:`plan_jobs` lists them in the serial order (fold by fold: search, retrain,
baselines); :class:`Schedule` tracks which may start; :func:`run_job` runs one, the same
function in-process (``--executor serial``) or in a Ray worker (``--executor ray``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasspeech.config import RunConfig
from nasspeech.workflow.datasets import RunData
from nasspeech.workflow.errors import WorkflowError

#: The model name of a fold's search job (its retraining is ``searched``).
SEARCH = "search"
SEARCHED = "searched"


@dataclass(frozen=True)
class Job:
    """One unit of work: ``model`` is ``search``, ``searched`` (the retraining of that fold's
    genotype) or a baseline name; ``scope`` is ``""`` in a plain cv."""

    scope: str
    fold: int
    model: str

    @property
    def key(self) -> str:
        """Its folder under the run directory, which also names it: ``fold_0/search``,
        ``lstm_only/fold_1/train``, ``fold_2/cnn``."""
        part = "train" if self.model == SEARCHED else self.model
        return "/".join(p for p in (self.scope, f"fold_{self.fold}", part) if p)

    @property
    def needs(self) -> Job | None:
        """The job whose result this one needs (a retraining needs its search)."""
        return Job(self.scope, self.fold, SEARCH) if self.model == SEARCHED else None


@dataclass
class Scope:
    """A cross-validation of one config: its folds, and the baselines run beside it
    (``search=False``: only those)."""

    name: str
    config: RunConfig
    data: RunData
    folds: list[int]
    baselines: tuple[str, ...] = ()
    search: bool = True

    @property
    def models(self) -> tuple[str, ...]:
        """The models it trains and tests: ``searched`` (if it searches), the baselines."""
        return ((SEARCHED,) if self.search else ()) + tuple(self.baselines)


@dataclass
class Plan:
    """What an executor runs: the jobs of ``scopes`` in the run directory ``run_dir``."""

    run_dir: Path
    scopes: list[Scope]
    resume: bool = False
    jobs: list[Job] = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = plan_jobs(self.scopes)
        self._scopes = {s.name: s for s in self.scopes}

    def scope(self, job: Job) -> Scope:
        return self._scopes[job.scope]

    def job_dir(self, job: Job) -> Path:
        return self.run_dir / job.key


def plan_jobs(scopes: Iterable[Scope]) -> list[Job]:
    """Per scope, per fold: the search, its retraining, then the baselines."""
    return [Job(s.name, k, model) for s in scopes for k in s.folds
            for model in ((SEARCH,) if s.search else ()) + s.models]


@dataclass
class Outcome:
    """How a job ended: ``value`` (``{"genotype": json}`` of a search, ``{"metrics": ...}``
    of a training), or ``error`` (failed) or ``skipped`` (a job it needs failed)."""

    job: Job
    value: dict[str, Any] | None = None
    error: str | None = None
    skipped: str | None = None
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


def run_job(job: Job, config: RunConfig, data: RunData, job_dir: Path, *, resume: bool,
            progress: bool, genotype: str | None = None) -> dict[str, Any]:
    """Run ``job`` in ``job_dir`` (a search, or a training of ``genotype``'s model or a
    baseline); what a job that needs it receives, or the metrics."""
    from nasspeech.genotype import Genotype
    from nasspeech.workflow.search import run_search
    from nasspeech.workflow.train import run_train, without_auxiliary

    if job.model == SEARCH:
        found = run_search(config, data, job.fold, job_dir, resume=resume, progress=progress)
        return {"genotype": found.genotype.to_json()}
    model = None
    if genotype is not None:
        model = Genotype.from_json(genotype, origin=f"the genotype of {job.key}")
    if job.model != SEARCHED:  # baselines: no auxiliary head (it belongs to searched models)
        config = without_auxiliary(config)
    trained = run_train(config, data, job.fold, job_dir, genotype=model, model_name=job.model,
                        progress=progress, resume=resume)
    return {"metrics": trained.metrics}


def describe_error(exc: BaseException) -> str:
    """One line: a nasspeech error's message, else the exception type and its first line."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "(no message)"
    if type(exc).__module__.startswith("nasspeech") and isinstance(exc, (WorkflowError,
                                                                          ValueError)):
        return first
    return f"{type(exc).__name__}: {first}"


class Schedule:
    """The jobs' states: waiting, running, done, failed or skipped. A job is ready when what
    it needs is done; when a job fails, the jobs that need it are skipped. ``report`` gets
    each change as one line (``progress``)."""

    def __init__(self, jobs: list[Job], report: Callable[[str], None] | None = None) -> None:
        self.jobs = list(jobs)
        self.outcomes: dict[Job, Outcome] = {}
        self.running: dict[Job, float] = {}
        self._report = report
        self._t0 = time.perf_counter()

    def ready(self) -> list[Job]:
        """Jobs that may start now, in plan order."""
        return [j for j in self.jobs if j not in self.outcomes and j not in self.running
                and (j.needs is None or (j.needs in self.outcomes
                                         and self.outcomes[j.needs].ok))]

    @property
    def finished(self) -> bool:
        return len(self.outcomes) == len(self.jobs)

    def input_of(self, job: Job) -> str | None:
        """The genotype (JSON) a retraining job receives from its search."""
        if job.needs is None:
            return None
        value = self.outcomes[job.needs].value or {}
        return value.get("genotype")

    def start(self, job: Job) -> None:
        self.running[job] = time.perf_counter()
        self._line(job, "started")

    def done(self, job: Job, value: dict[str, Any], note: str = "") -> None:
        seconds = time.perf_counter() - self.running.pop(job, time.perf_counter())
        self.outcomes[job] = Outcome(job, value=value, seconds=seconds, note=note)
        metrics = value.get("metrics")
        what = f"UA {metrics['ua']:.2%}" if metrics else "genotype found"
        self._line(job, f"done: {what} in {seconds:.1f}s{f' ({note})' if note else ''}")

    def fail(self, job: Job, error: str) -> None:
        seconds = time.perf_counter() - self.running.pop(job, time.perf_counter())
        self.outcomes[job] = Outcome(job, error=error, seconds=seconds)
        self._line(job, f"FAILED: {error}")
        for other in self.jobs:
            if other.needs == job and other not in self.outcomes:
                self.outcomes[other] = Outcome(other, skipped=f"{job.key} failed")
                self._line(other, f"skipped: {job.key} failed")

    def counts(self) -> dict[str, int]:
        done = sum(o.ok for o in self.outcomes.values())
        failed = sum(o.error is not None for o in self.outcomes.values())
        skipped = sum(o.skipped is not None for o in self.outcomes.values())
        return {"done": done, "running": len(self.running), "failed": failed,
                "skipped": skipped,
                "waiting": len(self.jobs) - len(self.outcomes) - len(self.running)}

    def summary(self) -> str:
        c = self.counts()
        return (f"jobs: {c['done']} done, {c['running']} running, {c['failed']} failed, "
                f"{c['skipped']} skipped, {c['waiting']} waiting "
                f"({time.perf_counter() - self._t0:.1f}s)")

    def _line(self, job: Job, what: str) -> None:
        if self._report is not None:
            c = self.counts()
            self._report(f"[{time.perf_counter() - self._t0:7.1f}s] {job.key}: {what}  "
                         f"({c['done']} done, {c['running']} running, {c['failed']} failed, "
                         f"{c['waiting']} waiting)")


class JobsFailedError(WorkflowError):
    """Some jobs of a cv failed (the others finished): one line per failed or skipped job."""

    def __init__(self, outcomes: Iterable[Outcome]) -> None:
        outcomes = list(outcomes)
        bad = [o for o in outcomes if not o.ok]
        failed = [o for o in bad if o.error is not None]
        lines = [(f"{len(failed)} of {len(outcomes)} jobs failed (the finished ones are kept; "
                  "fix the cause, then run again with --resume):")]
        lines += [f"  {o.job.key}: {o.error}" for o in failed]
        lines += [f"  {o.job.key}: skipped ({o.skipped})" for o in bad if o.skipped]
        super().__init__("\n".join(lines))
        self.outcomes = outcomes


def check_outcomes(outcomes: dict[Job, Outcome]) -> None:
    """Raise :class:`JobsFailedError` if a job failed or was skipped."""
    if not all(o.ok for o in outcomes.values()):
        raise JobsFailedError(outcomes.values())
