"""Fork/pipe plumbing of the estimate: a call or a series of traces in a forked copy of this
process (Linux), and whether one pays (idle cores, read from ``/proc/stat``) or works (no
autograd device threads started yet)."""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from array import array
from collections.abc import Callable
from typing import Any

import torch

from nasspeech.memory.records import Trace

#: a job for :meth:`~nasspeech.memory.session.StepTracerSession.trace_in_background`: a batch
#: size, or ``(batch size, stop_after_tasks)`` for a prefix of the step
Job = int | tuple[int, int | None]


_FORKED_AUTOGRAD_BROKEN = False


def forked_autograd_works() -> bool:
    """Whether a forked copy of this process can run a backward pass (Linux). It cannot
    once this process started autograd's device threads: on a machine with CUDA, its first
    backward pass does (PyTorch then refuses autograd in a fork). Tried in a fork; a
    failure is remembered (the threads do not go away)."""
    global _FORKED_AUTOGRAD_BROKEN
    if _FORKED_AUTOGRAD_BROKEN or not sys.platform.startswith("linux"):
        return not _FORKED_AUTOGRAD_BROKEN and sys.platform.startswith("linux")
    if not torch.cuda.is_available():
        return True  # no device threads without a device
    pid = os.fork()
    if pid == 0:  # the child: one tiny backward pass, exit without any cleanup
        code = 1
        try:
            x = torch.ones(1, requires_grad=True)
            (x * 2).sum().backward()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    _FORKED_AUTOGRAD_BROKEN = os.waitstatus_to_exitcode(status) != 0
    return not _FORKED_AUTOGRAD_BROKEN


def as_job(job: Job) -> tuple[int, int | None]:
    return (job, None) if isinstance(job, int) else (int(job[0]), job[1])


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) CPU time of the machine so far, in clock ticks (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 5:
        return None
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait; user..steal


def idle_cores(since: tuple[int, int] | None) -> float:
    """How many CPU cores were idle on average since ``since`` (:func:`cpu_times`); where
    that cannot be measured, the core count minus one (this process)."""
    now = cpu_times()
    cores = os.cpu_count() or 1
    if since is None or now is None or now[1] - since[1] < 5:
        return cores - 1.0
    return cores * (now[0] - since[0]) / (now[1] - since[1])


class BackgroundTraces:
    """Sizes-only traces in a forked copy of a session, one after the other (two processes
    sharing a core run slower than one: only the caller's and this one), each sent as soon
    as it is done; :meth:`get` waits for one."""

    def __init__(self, session: Any, jobs: list[tuple[int, int | None]]) -> None:
        from nasspeech.memory import meta_trace  # noqa: F401 - imported once, before forking

        self.pending = [b for b, _ in jobs]  # not received yet, in order
        self.results: dict[int, Trace | None] = {}
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: trace, send, exit without running any cleanup
            os.close(r)
            _send_traces(session, jobs, w)
        os.close(w)
        self.pid: int | None = pid
        self.pipe = os.fdopen(r, "rb")

    @property
    def jobs(self) -> set[int]:
        """The batch sizes whose traces were not collected yet."""
        return set(self.pending) | set(self.results)

    def get(self, batch_size: int) -> Trace | None:
        """The trace at ``batch_size`` (None if it failed in its process)."""
        while batch_size in self.pending:
            b = self.pending.pop(0)
            try:
                packed = pickle.load(self.pipe)
            except Exception:  # noqa: BLE001 - the process failed or was killed
                packed = None
            self.results[b] = _unpack_trace(packed) if packed is not None else None
        if not self.pending:
            self.close()
        return self.results.pop(batch_size, None)

    def close(self) -> None:
        """Stop (if still running) and reap the process."""
        if self.pid is None:
            return
        reap(self.pid, self.pipe, kill=bool(self.pending))
        self.pid = None

    def __del__(self) -> None:
        self.close()


def _send_traces(session: Any, jobs: list[tuple[int, int | None]],
                 fd: int) -> None:
    """In the forked process: trace each job and send it (None for one that failed, and
    nothing after it), then exit without any cleanup of the copy."""
    code = 0
    try:
        session.progress = None
        with os.fdopen(fd, "wb") as out:
            for b, stop in jobs:
                try:
                    t = session.trace(b, attribute=False, stop_after_tasks=stop)
                    packed: tuple | None = (
                        array("q", t.sizes()).tobytes(), array("q", t.events).tobytes(),
                        t.initial, t.batch_size, t.meta)
                except Exception:  # noqa: BLE001 - the caller traces it itself
                    packed, code = None, 1
                pickle.dump(packed, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                if code:
                    break
    finally:
        os._exit(code)


def _unpack_trace(packed: tuple) -> Trace:
    sizes, events, initial, batch, meta = packed
    trace = Trace(initial=initial, events=array("q", events).tolist(), batch_size=batch,
                  meta=meta)
    trace.nbytes = array("q", sizes).tolist()
    return trace


class ForkedCall:
    """``fn()`` in a forked copy of this process (Linux); :meth:`result` waits for it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: call, send, exit without running any cleanup
            code = 0
            try:
                os.close(r)
                try:
                    payload = pickle.dumps(("ok", fn()), protocol=pickle.HIGHEST_PROTOCOL)
                except BaseException:  # noqa: BLE001 - reported to the parent
                    payload, code = pickle.dumps(("error", traceback.format_exc())), 1
                with os.fdopen(w, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(code)
        os.close(w)
        self.pid: int | None = pid
        self.pipe = os.fdopen(r, "rb")

    def result(self) -> tuple[bool, Any]:
        """``(True, value)``, or ``(False, None)`` if the call failed."""
        if self.pid is None:
            return False, None
        try:
            data = self.pipe.read()
        finally:
            self.pipe.close()
            os.waitpid(self.pid, 0)
            self.pid = None
        try:
            status, value = pickle.loads(data)
        except Exception:  # noqa: BLE001 - the process was killed
            return False, None
        return status == "ok", value if status == "ok" else None

    def close(self) -> None:
        """Stop and reap the process if its result was not collected."""
        if self.pid is not None:
            reap(self.pid, self.pipe, kill=True)
            self.pid = None


def reap(pid: int, pipe, kill: bool) -> None:
    """Close the pipe to a forked process and wait for it (killing it first if asked)."""
    if kill:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    pipe.close()
    os.waitpid(pid, 0)
