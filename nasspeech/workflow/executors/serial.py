"""``--executor serial``: the jobs one after the other in this process, in plan order (fold
by fold: search, retrain, baselines)."""

from __future__ import annotations

from types import TracebackType

from nasspeech.config import RunConfig
from nasspeech.workflow.executors import progress_lines
from nasspeech.workflow.jobs import Job, Outcome, Plan, Schedule, describe_error, run_job


class SerialExecutor:
    """Runs the jobs in-process. By default the first failure stops the run (its exception
    propagates, as a single process's run always did); ``keep_going`` records it and runs
    the jobs that do not need the failed one."""

    name = "serial"

    def __init__(self, keep_going: bool = False) -> None:
        self.keep_going = keep_going

    def prepare(self, config: RunConfig) -> RunConfig:
        return config

    def __enter__(self) -> SerialExecutor:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def run(self, plan: Plan, progress: bool) -> dict[Job, Outcome]:
        report = progress_lines(progress)
        schedule = Schedule(plan.jobs, report)
        while ready := schedule.ready():
            job = ready[0]
            scope = plan.scope(job)
            schedule.start(job)
            try:
                value = run_job(job, scope.config, scope.data, plan.job_dir(job),
                                resume=plan.resume, progress=progress,
                                genotype=schedule.input_of(job))
            except Exception as exc:
                if not self.keep_going:
                    raise
                schedule.fail(job, describe_error(exc))
                continue
            schedule.done(job, value)
        if report is not None:
            report(schedule.summary())
        return schedule.outcomes
