"""Predict again, with the estimator as it is now, what a GPU session measured.

    python benchmarks/gpu_repredict.py RUN_DIR [RUN_DIR ...] --out FILE.json

A session's ``validate.json`` holds its measurements and the predictions of the estimator
it ran. After a calibration the measurements stay valid (they are of the toolkit's step,
not of the estimator), so this computes the current estimator's prediction for each valid
measured configuration (on this machine's CPU and torch), and the largest batch for the
device and the A100-40GB. ``gpu_report.py`` shows them beside the measurements.

A measurement taken while an earlier step's memory was still allocated
(``allocated_at_start`` above the 68 MB the cuBLAS handles keep) is used for peak
allocated only, as ``measured - allocated_at_start + 68,157,440`` (what a fresh process
holds), and marked ``derived``; its reserved figure is not usable. One taken after a step
ran out of memory, by a harness that did not record ``allocated_at_start``, is not used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_memory_validation import configs

PERSISTENT = 68_157_440  # what stays allocated between steps (2 cuBLAS workspaces + 1 MiB)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    from nasspeech.config import SearchConfig
    from nasspeech.io import atomic_write
    from nasspeech.memory import estimate
    from nasspeech.memory.batch import BatchModel, StepTracerSession
    from nasspeech.memory.profiles import PROFILES, GpuProfile

    measured: dict[str, dict] = {}
    total = None
    for run, folder in enumerate(a.runs, 1):
        oom_seen = False  # a step that ran out of memory may have left its tensors behind
        for r in json.loads((folder / "validate.json").read_text()):
            if r.get("kind") == "setup":
                total = r["total_memory"]
            if r.get("kind") == "max_batch" and (
                    r.get("runs") is False or r.get("plus5_runs") is False
                    or any(not ok for _, ok in r.get("tried", []))):
                oom_seen = True
            if r.get("kind") != "compare" or "error" in r:
                continue
            if "allocated_at_start" not in r and oom_seen:
                continue  # unknown what was still allocated: not usable
            start = r.get("allocated_at_start", 0)
            if start <= PERSISTENT:
                measured[r["name"]] = {"run": run, "measured_allocated": r["measured_allocated"],
                                       "measured_reserved": r["measured_reserved"]}
            elif r["name"] not in measured:
                measured[r["name"]] = {"run": run, "derived": True, "measured_allocated":
                                       r["measured_allocated"] - start + PERSISTENT,
                                       "measured_reserved": None}
    device = GpuProfile("this-device", total, "the measured device", "torch total_memory", True)
    out = []
    for name, group, space, batch, order, _ in configs(dry=False):
        if name not in measured:
            continue
        t0 = time.perf_counter()
        est = estimate(space, batch, device, order=order, max_batch=False, parallel=False)
        out.append({"kind": "compare", "name": name, "group": group, "batch": batch,
                    "order": order, **measured[name],
                    "pred_allocated": est.peak_allocated_bytes,
                    "pred_reserved": est.peak_reserved_bytes,
                    "estimate_s": round(time.perf_counter() - t0, 2)})
        print(json.dumps(out[-1]), flush=True)
    emo = next(s for n, _, s, *_ in configs(dry=False) if n.startswith("emodarts"))
    for order in (2, 1):
        model = BatchModel.fit(StepTracerSession(emo, SearchConfig(order=order)))
        out.append({"kind": "max_batch", "order": order, "predicted": {
            "this-device": model.max_batch(device) if model else None,
            "a100-40gb": model.max_batch(PROFILES["a100-40gb"]) if model else None}})
        print(json.dumps(out[-1]), flush=True)
    atomic_write(a.out, json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
