"""Second-order DARTS step: finite-difference vs exact (double-backward) Hessian-vector product.

    python benchmarks/hvp.py                      # JSON lines, one per measured process
    python benchmarks/hvp.py --rounds 2 --steps 3

Each measurement runs in a fresh process (so ``ru_maxrss`` is that mode's peak), the modes
alternating (fd, exact, fd, exact, ...) so that a change in machine load hits both. A process
reports the median wall time of ``--steps`` search steps after one warm-up step, its resident
set size after building the supernet and its peak (ru_maxrss), at ``--threads`` threads.
The space is the joint CNN + seq space of ``benchmarks/real_speech.py`` (64 x 64 input).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(hvp: str, steps: int, batch: int, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from real_speech import joint_components

    from nasspeech.search import Architect, search_step
    from nasspeech.space import SearchSpace

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    space = SearchSpace(name="hvp", input_shape=(1, 64, 64), num_classes=4,
                        components=joint_components())
    model = space.build_supernet()
    arch = Architect(model, order=2, hvp=hvp)
    opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9)
    x, y = torch.randn(2, batch, 1, 64, 64), torch.randint(0, 4, (2, batch))
    base = _rss_mib()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        search_step(model, arch, opt, (x[0], y[0]), (x[1], y[1]), lr=0.05)
        if i:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"hvp": hvp, "batch": batch, "threads": threads, "steps": steps,
            "step_s_median": round(statistics.median(times), 3),
            "rss_after_build_mib": round(base, 1), "peak_rss_mib": round(peak, 1),
            "peak_minus_build_mib": round(peak - base, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hvp", choices=["finite_difference", "exact"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if args.hvp:
        print(json.dumps(measure(args.hvp, args.steps, args.batch, args.threads)), flush=True)
        return
    for _ in range(args.rounds):
        for hvp in ("finite_difference", "exact"):
            subprocess.run([sys.executable, __file__, "--hvp", hvp, "--steps", str(args.steps),
                            "--batch", str(args.batch), "--threads", str(args.threads)],
                           check=True)


if __name__ == "__main__":
    main()
