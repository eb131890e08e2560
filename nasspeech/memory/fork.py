"""Fork/pipe plumbing of the estimate and the planner: a call, a series of traces, or a list
of jobs shared by several forked copies of this process (Linux), and whether forking pays
(idle cores, from ``/proc/stat`` and the load average) or works (no other threads, no
autograd device threads started yet)."""

from __future__ import annotations

import os
import pickle
import select
import sys
import threading
import time
import traceback
from array import array
from collections.abc import Callable, Iterator
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
    """How many CPU cores were idle on average since ``since`` (:func:`cpu_times`). Where
    that interval is too short to measure (or ``/proc/stat`` cannot be read), the core
    count minus the 1-minute load average (which counts this process); without either,
    the core count minus one (this process)."""
    cores = os.cpu_count() or 1
    now = cpu_times()
    if since is None or now is None or now[1] - since[1] < 5:
        try:
            return cores - os.getloadavg()[0]
        except (AttributeError, OSError):
            return cores - 1.0
    return cores * (now[0] - since[0]) / (now[1] - since[1])


def can_fork() -> bool:
    """Whether a forked copy of this process can do the estimator's work: Linux (fork is
    unsafe with some of macOS's system libraries), no other (non-daemon) thread running (a
    lock it holds would stay locked in the copy), autograd usable in a fork."""
    if not sys.platform.startswith("linux"):
        return False
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return False
    return forked_autograd_works()


def fork_workers(since: tuple[int, int] | None, parallel: bool | None) -> int:
    """How many processes should share a list of jobs while this one waits for them: 1
    (none forked: the jobs run here) with ``parallel=False``, where forking cannot work
    (:func:`can_fork`), or (``parallel=None``) where no core is idle; else this process's
    core plus the idle ones (:func:`idle_cores` since ``since``), all cores with
    ``parallel=True``."""
    if parallel is False or not can_fork():
        return 1
    cores = os.cpu_count() or 1
    if parallel:
        return max(2, cores)
    return max(1, min(cores, 1 + int(idle_cores(since) + 0.4)))


def fork_map(fn: Callable[[Any], Any], items: list[Any], workers: int
             ) -> Iterator[tuple[int, bool, Any]]:
    """``(index, ok, fn(items[index]))`` for every item, as each is done: ``workers`` forked
    processes take the items one at a time (``workers <= 1``: here, in order). ``ok`` is
    False (the value then a message) where ``fn`` raised; an item whose process died is
    computed here at the end."""
    if workers <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            try:
                yield i, True, fn(item)
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                yield i, False, f"{type(exc).__name__}: {exc}"
        return
    tasks_r, tasks_w = os.pipe()
    # every index at once, 4 bytes each: reads of 4 bytes from a pipe never interleave
    os.write(tasks_w, b"".join(i.to_bytes(4, "little") for i in range(len(items))))
    os.close(tasks_w)  # the workers stop at the end of the pipe
    children: dict[int, int] = {}  # result pipe -> pid
    for _ in range(min(workers, len(items))):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: take items until none is left, exit without cleanup
            os.close(r)
            _work(fn, items, tasks_r, w)
        os.close(w)
        children[r] = pid
    os.close(tasks_r)
    done: set[int] = set()
    try:
        while children:
            ready, _, _ = select.select(list(children), [], [])
            for fd in ready:
                try:
                    i, ok, value = receive(fd)
                except (EOFError, OSError, pickle.UnpicklingError):
                    reap(children.pop(fd), fd, kill=False)
                    continue
                done.add(i)
                yield i, ok, value
    finally:
        for fd, pid in children.items():
            reap(pid, fd, kill=True)
    for i, item in enumerate(items):
        if i not in done:  # its process died with it
            try:
                yield i, True, fn(item)
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                yield i, False, f"{type(exc).__name__}: {exc}"


def _work(fn: Callable[[Any], Any], items: list[Any], tasks: int, out: int) -> None:
    code = 0
    try:
        while len(raw := os.read(tasks, 4)) == 4:
            i = int.from_bytes(raw, "little")
            try:
                message = (i, True, fn(items[i]))
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                message = (i, False, f"{type(exc).__name__}: {exc}")
            send(out, message)
    except BaseException:  # noqa: BLE001 - the parent computes what is missing
        code = 1
    finally:
        os._exit(code)


class BackgroundTraces:
    """Sizes-only traces in a forked copy of a session, one after the other (two processes
    sharing a core run slower than one: only the caller's and this one), each sent as soon
    as it is done; :meth:`get` waits for one, for at most ``patience`` seconds (None: as
    long as it takes): on a machine that got busy, the caller traces it itself rather than
    wait longer than that would take."""

    def __init__(self, session: Any, jobs: list[tuple[int, int | None]]) -> None:
        from nasspeech.memory import meta_trace  # noqa: F401 - imported once, before forking

        self.pending = [b for b, _ in jobs]  # not received yet, in order
        self.results: dict[int, Trace | None] = {}
        self.patience: float | None = None
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: trace, send, exit without running any cleanup
            os.close(r)
            _send_traces(session, jobs, w)
        os.close(w)
        self.pid: int | None = pid
        self.fd = r

    @property
    def jobs(self) -> set[int]:
        """The batch sizes whose traces were not collected yet."""
        return set(self.pending) | set(self.results)

    def get(self, batch_size: int) -> Trace | None:
        """The trace at ``batch_size`` (None if it failed in its process, or did not come
        within ``patience`` seconds: the process is then stopped)."""
        deadline = None if self.patience is None else time.monotonic() + self.patience
        while batch_size in self.pending:
            try:
                packed = receive(self.fd, deadline)
            except TimeoutError:
                self.close()  # too slow: the caller traces what is left itself
                self.pending.clear()
                break
            except Exception:  # noqa: BLE001 - the process failed or was killed
                packed = None
            b = self.pending.pop(0)
            self.results[b] = _unpack_trace(packed) if packed is not None else None
        if not self.pending:
            self.close()
        return self.results.pop(batch_size, None)

    def close(self) -> None:
        """Stop (if still running) and reap the process."""
        if self.pid is None:
            return
        reap(self.pid, self.fd, kill=bool(self.pending))
        self.pid = None

    def __del__(self) -> None:
        self.close()


def send(fd: int, value: Any) -> None:
    """Write ``value`` to the pipe ``fd`` as one message (its length, then its pickle)."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view):]


def receive(fd: int, deadline: float | None = None) -> Any:
    """The next message on the pipe ``fd`` (:func:`send`); :class:`TimeoutError` if it has not
    begun to arrive by ``deadline`` (:func:`time.monotonic`), :class:`EOFError` if the pipe
    closed first."""
    if deadline is not None and not select.select(
            [fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        raise TimeoutError
    size = int.from_bytes(_read(fd, 8), "little")
    return pickle.loads(_read(fd, size))


def _read(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the process closed its pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send_traces(session: Any, jobs: list[tuple[int, int | None]],
                 fd: int) -> None:
    """In the forked process: trace each job and send it (None for one that failed, and
    nothing after it), then exit without any cleanup of the copy."""
    code = 0
    try:
        session.progress = None
        for b, stop in jobs:
            try:
                t = session.trace(b, attribute=False, stop_after_tasks=stop)
                packed: tuple | None = (
                    array("q", t.sizes()).tobytes(), array("q", t.events).tobytes(),
                    t.initial, t.batch_size, t.meta)
            except Exception:  # noqa: BLE001 - the caller traces it itself
                packed, code = None, 1
            send(fd, packed)
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


def reap(pid: int, pipe: Any, kill: bool) -> None:
    """Close the pipe (a file or a descriptor) to a forked process and wait for it (killing
    it first if asked)."""
    if kill:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    if isinstance(pipe, int):
        os.close(pipe)
    else:
        pipe.close()
    os.waitpid(pid, 0)
