"""``--executor ray``: every job of a cv as a Ray task, on this machine or a Ray cluster.

The driver (this process) owns the run directory and schedules the jobs: a job starts as
soon as what it needs is done, at most as many at once as the cluster has room for
(``--max-parallel`` caps it). Each task runs :func:`nasspeech.workflow.jobs.run_job` with
``--cpus-per-task`` torch threads, after the same plugin loading and user imports as the
driver.

Where the task sees the run directory (a local Ray, or a filesystem mounted at the same path
on every node: it checks a token the driver wrote) it works in the job's folder directly, so
its per-epoch checkpoints survive a killed worker and Ray's retry resumes from them.
Elsewhere it works in a temp folder and sends its files back as bytes, which the driver
writes into the run directory; a retry then starts that job again from what the driver had
shipped to it (nothing, for a new job).

Ray retries a task only when its worker dies (``max_retries``, default 2); an exception in a
job is not retried: it is reported and the other jobs go on. Ctrl-C cancels the running tasks
and leaves the run resumable (``--resume``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from nasspeech.config import RunConfig
from nasspeech.extras import require
from nasspeech.io import atomic_write
from nasspeech.workflow.errors import WorkflowError
from nasspeech.workflow.executors import progress_lines
from nasspeech.workflow.jobs import (
    SEARCH,
    SEARCHED,
    Job,
    Outcome,
    Plan,
    Schedule,
    describe_error,
    run_job,
)
from nasspeech.workflow.lock import LOCK_FILE, LOCK_FILES
from nasspeech.workflow.rundir import CHECKPOINT, open_run_dir

#: Written by the driver into the run directory; a task that reads the same token works there.
TOKEN_FILE = ".ray-driver.json"
#: Test hook (not a setting): ``JOB_KEY=MARKER`` makes that job's worker SIGKILL itself once
#: its first checkpoint is written, unless the file MARKER exists (it is created first).
KILL_HOOK = "NASSPEECH_TEST_KILL_AFTER_CHECKPOINT"
#: Seconds to wait for a TCP connection to ``--address`` before giving up.
CONNECT_TIMEOUT = 5.0

_ADDRESS = re.compile(r"(?P<scheme>ray://)?(?P<host>\[[0-9a-fA-F:.]+\]|[\w.-]+):(?P<port>\d+)")


class ExecutorError(WorkflowError):
    """The Ray executor cannot run as asked (options, cluster, resources)."""


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; ``None`` for ``auto`` (a
    cluster started on this machine with ``ray start``)."""
    if address == "auto":
        return None
    found = _ADDRESS.fullmatch(address.strip())
    port = int(found["port"]) if found else 0
    if not found or not 0 < port < 65536:
        raise ExecutorError(f"--address {address!r}: expected auto, HOST:PORT or "
                            "ray://HOST:PORT (the head node's GCS or Ray Client port)")
    return found["host"].strip("[]"), port


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast (Ray itself waits minutes) when nothing listens at ``address``."""
    target = parse_address(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExecutorError(f"--address {address}: no Ray cluster answers at "
                            f"{target[0]}:{target[1]} ({reason}); start one with `ray start "
                            "--head`, or leave out --address for a local Ray") from None


class RayExecutor:
    """Runs the jobs as Ray tasks (see the module's docstring). Without ``address`` it starts
    a local Ray sized to this machine, unless this process is connected to one already."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: int | None = None,
                 gpus_per_task: float = 0.0, max_parallel: int | None = None,
                 ship_artifacts: bool = False, max_retries: int = 2) -> None:
        if cpus_per_task is not None and cpus_per_task < 1:
            raise ExecutorError(f"--cpus-per-task must be >= 1, got {cpus_per_task}")
        if gpus_per_task < 0:
            raise ExecutorError(f"--gpus-per-task must be >= 0, got {gpus_per_task}")
        if max_parallel is not None and max_parallel < 1:
            raise ExecutorError(f"--max-parallel must be >= 1, got {max_parallel}")
        if address is not None:
            parse_address(address)
        require("ray", "ray", "--executor ray")  # before any data is loaded
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.max_parallel = max_parallel
        self.ship_artifacts = ship_artifacts
        self.max_retries = max_retries
        self._ray: ModuleType | None = None
        self._started = False

    def prepare(self, config: RunConfig) -> RunConfig:
        """A task's torch threads: the config's ``threads`` (``--threads``), else
        ``--cpus-per-task``, else 1; checked against the cluster's nodes once connected."""
        config = config.model_copy(update={"threads": config.threads or self.cpus_per_task or 1})
        if self._ray is not None:
            largest = self._largest_node("CPU")
            if self.cpus(config) > largest:
                raise ExecutorError(
                    f"a task needs {self.cpus(config)} CPUs (--cpus-per-task, else the "
                    f"config's threads) but the largest node of the Ray cluster has "
                    f"{largest:g}; lower --cpus-per-task or --threads")
        return config

    def cpus(self, config: RunConfig) -> int:
        """The CPUs a task of ``config`` reserves: ``--cpus-per-task``, else its threads."""
        return self.cpus_per_task or config.threads or 1

    # -- connecting ------------------------------------------------------------------------
    def __enter__(self) -> RayExecutor:  # noqa: PYI034 - Self needs Python 3.11
        ray = require("ray", "ray", "--executor ray")
        if self.address is not None:
            check_reachable(self.address)
        if not ray.is_initialized():
            try:
                if self.address is None:
                    ray.init(include_dashboard=False, logging_level=logging.WARNING)
                else:
                    ray.init(address=self.address, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"--address {self.address}" if self.address else "a local Ray"
                raise ExecutorError(f"{where}: cannot start or join Ray: "
                                    f"{describe_error(exc)}") from None
            self._started = True
        self._ray = ray
        try:
            self._check_gpus()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._started = False
        self._ray = None

    def _largest_node(self, resource: str) -> float:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        return max((n.get("Resources", {}).get(resource, 0.0) for n in nodes), default=0.0)

    def _check_gpus(self) -> None:
        if self.gpus_per_task and self._largest_node("GPU") < self.gpus_per_task:
            total = self._ray.cluster_resources().get("GPU", 0)
            raise ExecutorError(
                f"--gpus-per-task {self.gpus_per_task:g}: no node of the Ray cluster has that "
                f"many GPUs (the cluster has {total:g}); use --gpus-per-task 0 to train on "
                "CPUs, or add GPU nodes")

    def _capacity(self, cpus: int) -> int:
        """How many tasks the cluster can run at once (``--max-parallel`` caps it)."""
        resources = self._ray.cluster_resources()
        n = int(resources.get("CPU", 0) // cpus)
        if self.gpus_per_task:
            n = min(n, int(resources.get("GPU", 0) // self.gpus_per_task))
        n = max(1, n)
        return min(n, self.max_parallel) if self.max_parallel else n

    # -- running ---------------------------------------------------------------------------
    def run(self, plan: Plan, progress: bool) -> dict[Job, Outcome]:
        from nasspeech.registry.plugins import autoload_enabled
        from nasspeech.workflow.imports import imported_modules

        if self._ray is None:
            raise RuntimeError("use `with executor:` before run()")
        ray = self._ray
        report = progress_lines(progress)
        schedule = Schedule(plan.jobs, report)
        token = uuid.uuid4().hex
        atomic_write(plan.run_dir / TOKEN_FILE, json.dumps({"token": token}))
        data: dict[int, Any] = {}
        for scope in plan.scopes:  # each data set once into the object store
            if id(scope.data) not in data:
                data[id(scope.data)] = ray.put(scope.data)
        common = {"run_dir": str(plan.run_dir.resolve()), "token": token,
                  "resume": plan.resume, "imports": imported_modules(),
                  "plugins": autoload_enabled(), "kill_hook": os.environ.get(KILL_HOOK),
                  "ship": self.ship_artifacts}
        task = ray.remote(_run_task)
        cpus = max(self.cpus(s.config) for s in plan.scopes)
        inflight: dict[Any, Job] = {}
        try:
            while not schedule.finished:
                room = self._capacity(cpus) - len(inflight)
                ready = sorted(schedule.ready(), key=lambda j: (j.model != SEARCH,
                                                                  j.model != SEARCHED))
                for job in ready[:max(room, 0)]:
                    scope = plan.scope(job)
                    spec = {**common, "job": [job.scope, job.fold, job.model],
                            "config": scope.config.model_dump(mode="json"),
                            "log": scope.config.log.model_dump(mode="json"),
                            "genotype": schedule.input_of(job)}
                    files = _read_files(plan.job_dir(job))
                    shipped = [ray.put(files)] if files else []  # fetched only if needed
                    ref = task.options(
                        num_cpus=self.cpus(scope.config), num_gpus=self.gpus_per_task,
                        max_retries=self.max_retries, retry_exceptions=False,
                        name=f"nasspeech {job.key}").remote(spec, data[id(scope.data)],
                                                            shipped)
                    inflight[ref] = job
                    schedule.start(job)
                if not inflight:
                    break
                finished, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in finished:
                    self._collect(ref, inflight.pop(ref), plan, schedule)
        except BaseException as exc:  # Ctrl-C, or the driver failed: stop the tasks
            for ref in inflight:
                ray.cancel(ref, force=True)
            if report is not None and isinstance(exc, KeyboardInterrupt):
                report(f"interrupted: {len(inflight)} running job(s) cancelled; finished jobs "
                       "are kept; continue with --resume")
            raise
        finally:
            (plan.run_dir / TOKEN_FILE).unlink(missing_ok=True)
        if report is not None:
            report(schedule.summary())
        return schedule.outcomes

    def _collect(self, ref: Any, job: Job, plan: Plan, schedule: Schedule) -> None:
        """Record how the task of ``job`` ended; write the files it sent back."""
        exceptions = self._ray.exceptions
        try:
            result = self._ray.get(ref)
        except exceptions.RayTaskError as exc:  # the job raised: not retried
            schedule.fail(job, describe_error(getattr(exc, "cause", None) or exc))
            return
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError,
                exceptions.OutOfMemoryError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            schedule.fail(job, f"its worker died {self.max_retries + 1} times "
                               f"({type(exc).__name__}: {first})")
            return
        except exceptions.RayError as exc:
            schedule.fail(job, describe_error(exc))
            return
        if result["files"]:
            write_files(plan.job_dir(job), result["files"])
        schedule.done(job, result["value"], note=result["note"])


def _read_files(folder: Path) -> dict[str, bytes]:
    """The files of a job's folder (not its lock files), by relative path."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in LOCK_FILES}


def write_files(job_dir: Path, files: dict[str, bytes]) -> None:
    """Write what a task sent back into its job's folder, under the folder's lock, atomically
    (checkpoints and models fsync-ed)."""
    with open_run_dir(job_dir, resume=True):
        for rel, payload in files.items():
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts or not parts:
                raise WorkflowError(f"{job_dir}: a task sent back a file outside its folder: "
                                    f"{rel!r}")
            atomic_write(job_dir / rel, payload, fsync=rel.endswith(".pt"))


# -- in the worker ---------------------------------------------------------------------------
def _run_task(spec: dict[str, Any], data: Any, shipped: list[Any]) -> dict[str, Any]:
    """One job in a Ray worker: the driver's plugin setting and user imports first, then the
    config (validated here, against this process's registries), then :func:`run_job`."""
    import torch

    from nasspeech.registry.plugins import set_plugin_autoload
    from nasspeech.workflow.imports import import_modules

    set_plugin_autoload(spec["plugins"])
    for name, base, origin in spec["imports"]:
        import_modules([name], base, origin)
    job = Job(*spec["job"])
    config = RunConfig.from_mapping({**spec["config"], "log": spec["log"]},
                                    origin=f"the config of {job.key}")
    torch.set_num_threads(config.threads or 1)
    root = Path(spec["run_dir"])
    if not spec["ship"] and _sees(root, spec["token"]):
        job_dir = root / job.key
        retried = not spec["resume"] and (job_dir / LOCK_FILE).exists()
        with _kill_hook(spec["kill_hook"], job, job_dir):
            value = run_job(job, config, data, job_dir, resume=spec["resume"] or retried,
                            progress=False, genotype=spec["genotype"])
        note = "resumed from its checkpoint after its worker died" if retried else ""
        return {"value": value, "files": {}, "note": note}
    import ray

    before: dict[str, bytes] = ray.get(shipped[0]) if shipped else {}
    with tempfile.TemporaryDirectory(prefix="nasspeech-job-") as tmp:
        job_dir = Path(tmp) / "job"
        for rel, payload in before.items():
            atomic_write(job_dir / rel, payload)
        if before:
            (job_dir / LOCK_FILE).touch()  # a run directory nasspeech made: resumable
        with _kill_hook(spec["kill_hook"], job, job_dir):
            value = run_job(job, config, data, job_dir, resume=spec["resume"] or bool(before),
                            progress=False, genotype=spec["genotype"])
        files = {rel: b for rel, b in _read_files(job_dir).items() if before.get(rel) != b}
    return {"value": value, "files": files,
            "note": f"{len(files)} files shipped back from {socket.gethostname()}"}


def _sees(run_dir: Path, token: str) -> bool:
    """Whether this process sees the driver's run directory (its token is there)."""
    try:
        return json.loads((run_dir / TOKEN_FILE).read_text()).get("token") == token
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _kill_hook(hook: str | None, job: Job, job_dir: Path) -> Iterator[None]:
    """The :data:`KILL_HOOK` test hook: a thread that SIGKILLs this worker once the job's
    first checkpoint exists (once: it creates the marker file first)."""
    key, _, marker = (hook or "").partition("=")
    if key != job.key or not marker or Path(marker).exists():
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if (job_dir / CHECKPOINT).exists():
                atomic_write(marker, str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    try:
        yield
    finally:
        stop.set()
