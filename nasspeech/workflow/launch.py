"""``--nproc N``: run N local copies of a ``nasspeech`` command as the processes of one
torch.distributed group (torchrun's environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` on a free local port), and supervise them.

Process 0's output is shown as it comes; the others' error output is kept. When a process
fails, the others are stopped at once (no one waits for a collective timeout) and the failing
process's own message is reported, not the "lost contact" of those that waited for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from nasspeech.workflow.errors import WorkflowError

#: Set in the processes :func:`launch` starts, so they know their input was reported already.
LAUNCHED_ENV = "NASSPEECH_LAUNCHED"
#: What a process says when it stopped because another one failed (not the cause).
CONSEQUENCE = "lost contact with the other processes"


class LaunchError(WorkflowError):
    """A process of the group failed; the message names it and says why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Process:
    def __init__(self, rank: int, argv: list[str], env: dict[str, str]) -> None:
        self.rank = rank
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nasspeech", *argv], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stderr, "err"),
                                         daemon=True)]
        if rank == 0:
            self.readers.append(threading.Thread(target=self._read,
                                                 args=(self.proc.stdout, "out"), daemon=True))
        for t in self.readers:
            t.start()

    def _read(self, stream: IO[bytes], which: str) -> None:
        """Forward process 0's output as it comes; keep the last lines of error output."""
        tail = ""
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            text = chunk.decode("utf-8", "replace")
            if self.rank == 0:
                target = sys.stdout if which == "out" else sys.stderr
                target.write(text)
                target.flush()
            if which == "err":
                tail = (tail + text)[-20000:]
        self.lines = [ln.strip() for ln in tail.replace("\r", "\n").splitlines() if ln.strip()]

    def finish(self) -> None:
        for t in self.readers:
            t.join(5)

    def message(self, prog: str) -> str:
        """Its own error line, else its last line of error output, else how it ended."""
        prefix = f"{prog}: error: "
        errors = [ln[len(prefix):] for ln in self.lines if ln.startswith(prefix)]
        if errors:
            return errors[-1]
        code = self.proc.returncode
        how = (f"killed by signal {-code}" if code is not None and code < 0
               else f"exit code {code}")
        return f"{self.lines[-1]} ({how})" if self.lines else how


def launch(argv_for: Callable[[int], list[str]], nproc: int, prog: str,
           grace_s: float = 3.0) -> int:
    """Run ``python -m nasspeech argv_for(rank)`` for ranks 0..nproc-1 and wait for all.

    Returns process 0's exit code when every process succeeded or process 0's own error is
    the cause (it has printed it); raises :class:`LaunchError` naming another process that
    failed first."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), LAUNCHED_ENV: "1",
           "PYTHONUNBUFFERED": "1"}
    procs: list[_Process] = []
    ended: list[_Process] = []  # processes that failed on their own (not stopped by us)
    try:
        for rank in range(nproc):
            procs.append(_Process(rank, argv_for(rank),
                                  {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
        while not all(p.proc.poll() == 0 for p in procs):
            if any(p.proc.poll() not in (None, 0) for p in procs):
                # the others stop on their own (lost contact) or are stopped below
                deadline = time.monotonic() + grace_s
                while time.monotonic() < deadline and any(p.proc.poll() is None for p in procs):
                    time.sleep(0.05)
                ended = [p for p in procs if p.proc.poll() not in (None, 0)]
                break
            time.sleep(0.1)
    except KeyboardInterrupt:  # the terminal sent it to every process: let them finish
        _stop(procs, grace_s=10.0)
        raise
    finally:
        _stop(procs, grace_s)
        for p in procs:
            p.finish()
    if not ended:
        return procs[0].proc.returncode
    causes = [p for p in ended if CONSEQUENCE not in p.message(prog)] or ended
    cause = min(causes, key=lambda p: p.rank)
    if cause.rank == 0:
        return procs[0].proc.returncode  # its message was shown with its output
    raise LaunchError(f"process {cause.rank} of {nproc} failed: {cause.message(prog)}")


def _stop(procs: list[_Process], grace_s: float) -> None:
    """Ask processes still running to stop (SIGTERM), then kill those that do not."""
    for p in procs:
        if p.proc.poll() is None:
            with contextlib.suppress(OSError):
                p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
