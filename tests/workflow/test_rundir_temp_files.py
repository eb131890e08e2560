"""A write killed mid-way leaves a temp file beside its target; resuming the run directory
removes it (under the run's lock), and touches nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from nasspeech.io import remove_stale_temp_files
from nasspeech.workflow.rundir import open_run_dir


def _killed_write(folder) -> None:
    """A child process that starts an atomic write of checkpoint.pt and is SIGKILLed in it."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from nasspeech.io import atomic_write_with
        def writer(fh):
            fh.write(b"partial")
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)
        atomic_write_with({str(folder / "checkpoint.pt")!r}, writer)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_resume_removes_what_a_killed_write_left(tmp_path):
    run = tmp_path / "run"
    with open_run_dir(run) as d:
        (d / "checkpoint.pt").write_bytes(b"good")
        (d / "notes.tmp").write_text("a user's file")  # not a temp name of ours
        (d / "plots").mkdir()
        (d / "plots" / ".alphas.png.x1y2z3.tmp").write_bytes(b"")  # only the top level
    _killed_write(run)
    left = list(run.glob(".checkpoint.pt.*.tmp"))
    assert len(left) == 1 and left[0].read_bytes() == b"partial"
    with open_run_dir(run, resume=True):
        assert not list(run.glob(".checkpoint.pt.*.tmp"))
    assert (run / "checkpoint.pt").read_bytes() == b"good"
    assert (run / "notes.tmp").is_file() and (run / "plots" / ".alphas.png.x1y2z3.tmp").is_file()


def test_remove_stale_temp_files_reports_what_it_removed(tmp_path):
    (tmp_path / ".a.json.abc.tmp").write_text("{")
    (tmp_path / ".hidden").write_text("keep")
    assert remove_stale_temp_files(tmp_path) == [tmp_path / ".a.json.abc.tmp"]
    assert (tmp_path / ".hidden").is_file()
    assert remove_stale_temp_files(tmp_path) == []
