"""Does a background trace (a forked copy of the tracing process, ``BackgroundTraces``) work
in a process that has initialised CUDA? Prints the forked copy's exception if it fails.

    python benchmarks/gpu_fork_check.py      # on a CUDA machine

On the CUDA run of 2026-11-29 ``test_background_traces_match_traces_in_this_process`` got
no trace from its forked copy in a pytest worker whose earlier tests had used CUDA; on the
CPU it passes. This checks the same call without CUDA, after CUDA is initialised, and after
a backward pass on CUDA.
"""

from __future__ import annotations

import pickle
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import cnn_yardstick


def main() -> int:
    from nasspeech.config import SearchConfig
    from nasspeech.memory import batch as B

    trace, dump = B.StepTracerSession.trace, pickle.dump

    def loud_trace(self, *args, **kwargs):
        try:
            return trace(self, *args, **kwargs)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            raise

    def loud_dump(*args, **kwargs):
        try:
            return dump(*args, **kwargs)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            raise

    B.StepTracerSession.trace, pickle.dump = loud_trace, loud_dump
    space = cnn_yardstick(dry=True)
    for stage in ("no CUDA yet", "CUDA initialised", "after a backward pass on CUDA"):
        if stage == "CUDA initialised":
            torch.zeros(1, device="cuda")
        elif stage.startswith("after"):
            x = torch.randn(64, 64, device="cuda", requires_grad=True)
            (x @ x).sum().backward()
            torch.cuda.synchronize()
        session = B.StepTracerSession(space, SearchConfig(order=2))
        background = B.BackgroundTraces(session, [(2, None)])
        got = background.get(2)
        here = session.trace(2, attribute=False)
        same = got is not None and got.events == here.events and got.sizes() == here.sizes()
        print(f"gpu_fork_check: {stage}: background trace "
              f"{'matches' if same else 'FAILED' if got is None else 'DIFFERS'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
