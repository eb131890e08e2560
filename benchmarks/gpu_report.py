"""The Markdown report of one GPU session (``benchmarks/gpu_session.sh``'s output folder).

    python benchmarks/gpu_report.py DIR                       # print it
    python benchmarks/gpu_report.py DIR --write FILE.md       # and write it

Reads ``constants.json``, ``validate.json``, ``timing.json`` and ``pytest.txt`` (whichever
exist) and reports what they hold: nothing is filled in for a step that did not run. Dry-run
records are refused.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

MiB = 1024**2
GiB = 1024**3
TARGET_ALLOCATED, TARGET_RESERVED = 2.0, 5.0  # median |error| in %, issue #18

#: the paper's protocol (docs: /work/shared/docs/emodarts.md) on IEMOCAP
PROTOCOL = {"clips": 2280, "folds": 5, "search_share": 0.7, "alpha_fraction": 0.5,
            "batch": 64, "search_epochs": 300, "train_epochs": 300}


def load(folder: Path, name: str) -> list[dict[str, Any]]:
    path = folder / name
    if not path.is_file():
        return []
    records = json.loads(path.read_text())
    def dry(r: Any) -> bool:
        value = r.get("value")
        return bool(r.get("dry_run") or isinstance(value, dict) and value.get("dry_run"))

    if any(dry(r) for r in records):
        raise ValueError(f"{path}: dry-run records hold no measurements; not reported")
    return records


def error_pct(pred: int, meas: int) -> float:
    return 100.0 * (pred - meas) / meas if meas else math.nan


def _mib(n: int | None) -> str:
    return "–" if n is None else f"{n / MiB:,.1f}"


def memory_section(records: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in records if r.get("kind") == "compare" and "invalid" not in r]
    spoiled = [r for r in records if r.get("kind") == "compare" and "invalid" in r]
    ok = [r for r in rows if "error" not in r]
    lines = ["## 1. Predicted vs measured memory of one search step", ""]
    if not rows and not spoiled:
        return [*lines, "Not run.", ""]
    lines += [("| config | group | batch | order | pred. alloc MiB | meas. alloc MiB | err % | "
              "pred. reserved MiB | meas. reserved MiB | err % | estimate s | step s | run |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['group']} | {r['batch']} | {r['order']} | "
                         f"failed: {r['error'][:150]} ||||||||")
            continue
        ea = error_pct(r["pred_allocated"], r["measured_allocated"])
        er = error_pct(r["pred_reserved"], r["measured_reserved"])
        lines.append(
            f"| {r['name']} | {r['group']} | {r['batch']} | {r['order']} | "
            f"{_mib(r['pred_allocated'])} | {_mib(r['measured_allocated'])} | {ea:+.2f} | "
            f"{_mib(r['pred_reserved'])} | {_mib(r['measured_reserved'])} | {er:+.2f} | "
            f"{r['estimate_s']} | {r['step_s']} | {r.get('run', 1)} |")
    lines.append("")
    if ok:
        lines += summary_lines(ok)
    if spoiled:
        lines += ["Not usable: an earlier step that ran out of memory left its tensors "
                  "allocated, so these measured on (or ran out of memory on) a device that was "
                  "already full; the peak allocated of those that ran is derived below, in the "
                  "section on the estimator as calibrated: "
                  + ", ".join(f"{r['name']} (run {r['run']})" for r in spoiled) + ".", ""]
    skipped = [r["name"] for r in records if r.get("kind") == "skipped"]
    if skipped:
        lines += [f"Not measured (time budget): {', '.join(skipped)}.", ""]
    return lines


def summary_lines(ok: list[dict[str, Any]]) -> list[str]:
    """Median and worst |error|, overall and per group, against the targets."""
    def stats(rs: list[dict[str, Any]], pred: str, meas: str) -> tuple[float, float, str]:
        errs = [(abs(error_pct(r[pred], r[meas])), r["name"]) for r in rs]
        worst = max(errs)
        return statistics.median(e for e, _ in errs), worst[0], worst[1]

    ma, wa, wa_name = stats(ok, "pred_allocated", "measured_allocated")
    mr, wr, wr_name = stats(ok, "pred_reserved", "measured_reserved")
    verdict = lambda m, t: "meets" if m <= t else "MISSES"
    lines = [
        (f"Over {len(ok)} configurations: median |error| of peak allocated **{ma:.2f} %** "
        f"({verdict(ma, TARGET_ALLOCATED)} the {TARGET_ALLOCATED:g} % target; worst "
        f"{wa:.2f} %, {wa_name}), of peak reserved **{mr:.2f} %** "
        f"({verdict(mr, TARGET_RESERVED)} the {TARGET_RESERVED:g} % target; worst {wr:.2f} %, "
        f"{wr_name})."), "",
        ("| group | configs | median abs. err allocated % | worst % | "
        "median abs. err reserved % | worst % |"), "|---|---|---|---|---|---|"]
    for group in dict.fromkeys(r["group"] for r in ok):
        rs = [r for r in ok if r["group"] == group]
        ga, gwa, _ = stats(rs, "pred_allocated", "measured_allocated")
        gr, gwr, _ = stats(rs, "pred_reserved", "measured_reserved")
        lines.append(f"| {group} | {len(rs)} | {ga:.2f} | {gwa:.2f} | {gr:.2f} | {gwr:.2f} |")
    return [*lines, ""]


def batch_section(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## Largest batch (emoDARTS)", ""]
    rows = [r for r in records if r.get("kind") == "max_batch"]
    if not rows:
        return [*lines, "Not run.", ""]
    setup = next((r for r in records if r.get("kind") == "setup"), {})
    ctx = setup.get("context_bytes")
    lines += [(f"The A100-40GB is emulated by capping this process's allocator "
              f"(`set_per_process_memory_fraction`) at the A100-40GB's `total_memory` minus the "
              f"CUDA context measured here ({_mib(ctx)} MiB)."), "",
              ("| order | device | predicted largest batch | runs at it | +5 % batch | "
              "+5 % runs | real largest batch (bisection) | run |"),
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("part") == "prediction" or "error" in r and "part" not in r:
            if "error" in r:
                lines.append(f"| {r['order']} | – | failed: {r['error'][:150]} |||||")
            continue
        real = "–"
        if "real_max_at_least" in r:
            real = (str(r["real_max_at_least"]) if r["exact"] else
                    f"{r['real_max_at_least']}..{r['real_max_below'] - 1}")
            if r.get("bisection_invalid"):
                real = (f"{r['predicted']}..{r['plus5'] - 1} (bisection not usable: it ran "
                        f"after the +5 % step ran out of memory)")
        if "error" in r:
            real = f"failed: {r['error'][:120]}"
        if "invalid" in r:
            real = f"not usable: {r['invalid']}"
        device = "A100-40GB (emulated)" if r["profile"] == "a100-40gb" else "this device"
        runs = ("–", "–") if "invalid" in r else (r.get("runs", "–"), r.get("plus5_runs", "–"))
        lines.append(f"| {r['order']} | {device} | {r['predicted']} | {runs[0]} | "
                     f"{r.get('plus5', '–')} | {runs[1]} | {real} | {r['run']} |")
    oom = [r for r in rows if r.get("part") == "check" and r.get("runs") is False
           and "invalid" not in r]
    lines += ["", "No predicted largest batch ran out of memory." if not oom else
              f"**{len(oom)} predicted largest batch(es) ran out of memory.**", ""]
    return lines


def constants_section(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## 2. Device constants measured", ""]
    by_kind = {r["kind"]: r for r in records}
    if not records:
        return [*lines, "Not run.", ""]
    ctx = by_kind.get("context", {})
    if "value" in ctx:
        v = ctx["value"]
        lines += [("CUDA context (device memory in use outside the caching allocator, "
                  "`total - free - reserved`), MiB:"), "",
                  ("| after init | + first matmul | + first conv | + first LSTM | "
                  "+ a whole search step | cuBLAS workspace fp32 (allocator) | "
                  "extra for bf16 |"), "|---|---|---|---|---|---|---|",
                  (f"| {_mib(v['after_init'])} | {_mib(v['after_matmul'])} | "
                  f"{_mib(v['after_conv'])} | {_mib(v['after_lstm'])} | "
                  f"{_mib(v['after_search_step'])} | {_mib(v['cublas_workspace_fp32'])} | "
                  f"{_mib(v['cublas_workspace_bf16_extra'])} |"), ""]
    elif ctx:
        lines += [f"CUDA context: failed: {ctx.get('error')}", ""]
    rnn = by_kind.get("rnn_reserve", {})
    if "value" in rnn:
        lines += [("cuDNN RNN training reserve space, bytes per (time step x sample x hidden "
                  "unit x layer x direction x 4 B):"), "",
                  ("| mode | T | B | H | layers | dirs | reserve MiB | per unit | "
                  "weights copied (functional_call) |"), "|---|---|---|---|---|---|---|---|---|"]
        for r in rnn["value"]:
            copy = r.get("weight_buf_copy_bytes", "")
            copy = "" if copy == "" else ("no" if copy is None else f"{copy} B "
                                          f"(weights {r['weights_bytes']} B)")
            lines.append(f"| {r['mode']} | {r['T']} | {r['B']} | {r['H']} | {r['layers']} | "
                         f"{r['dirs']} | {_mib(r['reserve_bytes'])} | {r['per_unit']} | "
                         f"{copy} |")
        lines.append("")
    elif rnn:
        lines += [f"RNN reserve: failed: {rnn.get('error')}", ""]
    conv = by_kind.get("conv_workspace", {})
    if "value" in conv:
        lines += [("cuDNN convolution workspace (transient bytes beyond outputs and gradients, "
                  "second call), batch 64:"), "",
                  ("| conv | C in→out | H=W | input MiB | forward MiB | backward MiB | "
                  "max / input |"), "|---|---|---|---|---|---|---|"]
        for r in conv["value"]:
            lines.append(f"| {r['conv']} | {r['C_in']}→{r['C_out']} | {r['HW']} | "
                         f"{_mib(r['input_bytes'])} | {_mib(r['fwd_workspace'])} | "
                         f"{_mib(r['bwd_workspace'])} | {r['max_over_input']} |")
        lines.append("")
    elif conv:
        lines += [f"Conv workspace: failed: {conv.get('error')}", ""]
    return lines


def steps_per_epoch(samples: int, batch: int) -> int:
    """``BatchStream``'s training batches: a final batch of one sample joins the previous."""
    n = math.ceil(samples / batch)
    return n - 1 if n > 1 and samples % batch == 1 else n


def budget(search_s: float, eval_s: float, retrain_s: float | None,
           p: dict[str, Any] = PROTOCOL) -> dict[str, float]:
    """Hours of the paper's protocol from one step's time (search, per-epoch evaluation
    batch, retrain); ``clips`` split as the toolkit splits them."""
    train_part = p["clips"] * (p["folds"] - 1) / p["folds"]
    search = round(train_part * p["search_share"])
    alpha = round(search * p["alpha_fraction"])
    weight = search - alpha
    retrain = round(train_part) - search
    per_fold_search = p["search_epochs"] * (steps_per_epoch(weight, p["batch"]) * search_s
                                            + math.ceil(alpha / p["batch"]) * eval_s)
    out = {"search_steps_per_epoch": steps_per_epoch(weight, p["batch"]),
           "search_h": p["folds"] * per_fold_search / 3600}
    if retrain_s is not None:
        out["retrain_steps_per_epoch"] = steps_per_epoch(retrain, p["batch"])
        out["retrain_h"] = (p["folds"] * p["train_epochs"]
                            * steps_per_epoch(retrain, p["batch"]) * retrain_s / 3600)
    return out


def timing_section(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## 3. Step times", ""]
    if not records:
        return [*lines, "Not run.", ""]
    lines += ["| what | space | batch | order | precision | median s | all timed s |",
              "|---|---|---|---|---|---|---|"]
    for r in records:
        med = f"failed: {r['error'][:150]}" if "error" in r else r["median_s"]
        lines.append(f"| {r['what']} | {r['space']} | {r['batch']} | {r['order'] or '–'} | "
                     f"{r['precision']} | {med} | {r.get('all_s', '')} |")
    lines.append("")

    def find(what: str, order: int | None, precision: str) -> float | None:
        for r in records:
            if (r["what"], r["space"], r["order"], r["precision"]) == (
                    what, "emodarts", order, precision) and "error" not in r:
                return r["median_s"]
        return None

    p = PROTOCOL
    lines += [(f"The paper's search budget from these times, on this device: IEMOCAP's "
              f"{p['clips']:,} improvised clips (our assumption: the usual 4-class count; "
              f"the paper gives none), {p['folds']} folds, each fold's training part split "
              f"{p['search_share']:.0%}/{1 - p['search_share']:.0%} into search and training "
              f"sets, the search set halved into weight and alpha batches, batch "
              f"{p['batch']}, {p['search_epochs']} search and {p['train_epochs']} training "
              f"epochs, plus the per-epoch no-grad evaluation of the alpha set."), "",
              "| precision | order | search h (5 folds) | retrain h (5 folds) |",
              "|---|---|---|---|"]
    for precision in ("fp32", "bf16 autocast"):
        ev = find("eval", None, "fp32")
        rt = find("retrain", None, precision)
        for order in (2, 1):
            st = find("search", order, precision)
            if st is None or ev is None:
                continue
            b = budget(st, ev, rt)
            retrain = f"{b['retrain_h']:.2f}" if "retrain_h" in b else "–"
            lines.append(f"| {precision} | {order} | {b['search_h']:.2f} | {retrain} |")
    return [*lines, ""]


def pytest_section(folder: Path) -> list[str]:
    lines = ["## 4. The test suite on CUDA", ""]
    path = folder / "pytest.txt"
    if not path.is_file():
        return [*lines, "Not run.", ""]
    text = path.read_text(errors="replace")
    counts = {k: len(re.findall(rf"\] {k.upper()} ", text)) + len(
        re.findall(rf" {k.upper()}\s+tests/", text)) for k in ("passed", "failed", "skipped",
                                                              "error")}
    summary = re.findall(r"^=+ (.*?(?:passed|failed|error).*?) =+$", text, re.MULTILINE)
    exit_line = re.findall(r"^pytest exit (\d+)", text, re.MULTILINE)
    lines.append(f"Summary line: `{summary[-1]}`" if summary else
                 "No summary line (the run was cut short); per-test lines counted: "
                 + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if exit_line:
        lines.append(f"(exit status {exit_line[-1]}{': timed out' if exit_line[-1] == '124' else ''})")
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (tests/\S+)", text, re.MULTILINE)))
    if failed:
        lines += ["", "Failed:", *[f"- `{t}`" for t in failed]]
    return [*lines, ""]


def header(constants: list[dict[str, Any]], folder: Path) -> list[str]:
    env = next((r["value"] for r in constants if r.get("kind") == "env" and "value" in r), {})
    driver = ""
    log = folder / "log.txt"
    if log.is_file():
        m = re.search(r"^NVIDIA [^,]+, [^,]+, ([\d.]+)", log.read_text(errors="replace"), re.MULTILINE)
        driver = f", driver {m.group(1)}" if m else ""
    return ["# GPU memory validation, constants and step times (issue #18)", "",
            (f"Device: {env.get('device', '?')} (compute capability "
            f"{'.'.join(map(str, env.get('capability', [])))}, `total_memory` "
            f"{env.get('total_memory', 0):,} B = {env.get('total_memory', 0) / GiB:.2f} GiB"
            f"{driver}); torch {env.get('torch', '?')}, CUDA {env.get('cuda', '?')}, cuDNN "
            f"{env.get('cudnn', '?')} (`cudnn.benchmark` {env.get('cudnn_benchmark', '?')}); "
            f"Python {env.get('python', '?')}; measured {env.get('date', '?')} by "
            f"`benchmarks/gpu_session.sh`."), ""]


#: what stays allocated between search steps (2 cuBLAS workspaces + 1 MiB, H200)
PERSISTENT = 68_157_440


def mark_validity(records: list[dict[str, Any]]) -> None:
    """Mark (``invalid``: why) the records of one run that an earlier step running out of
    memory may have spoiled: its tensors can stay allocated after the error (seen on the
    H200: 139 GiB still allocated after a step ran out of memory), so what is measured
    after it is not the step's own. A comparison records ``allocated_at_start`` (newer
    harness): valid while that is at most what cuBLAS keeps. Otherwise: valid up to the
    first step that ran out of memory; a largest-batch check's bisection, which follows its
    +5 % step running out of memory, is never valid."""
    dirty = False
    for r in records:
        kind = r.get("kind")
        if kind == "compare" and "OutOfMemoryError" in r.get("error", "") and dirty:
            r["invalid"] = "ran out of memory while an earlier out-of-memory step's tensors " \
                           "were still allocated"
        elif kind == "compare" and "error" not in r:
            start = r.get("allocated_at_start")
            if (start is not None and start > PERSISTENT) or (start is None and dirty):
                r["invalid"] = "measured while an earlier out-of-memory step's tensors were " \
                               "still allocated"
        elif kind == "max_batch" and r.get("part") == "check":
            if dirty:
                r["invalid"] = "run after an out-of-memory step whose tensors stayed allocated"
            elif r.get("plus5_runs") is False and "tried" in r:
                r["bisection_invalid"] = True
            if r.get("runs") is False or r.get("plus5_runs") is False:
                dirty = True


def merged_validate(folders: list[Path]) -> list[dict[str, Any]]:
    """The memory records of several runs, each marked with its ``run`` (1, 2, ...) and
    its validity (:func:`mark_validity`): a valid measurement of a configuration replaces
    an earlier one (an invalid one replaces only an invalid one or a failure); what was
    skipped counts only from the last run, and not where a run measured it."""
    records: dict[tuple, dict[str, Any]] = {}
    for run, folder in enumerate(folders, 1):
        run_records = load(folder, "validate.json")
        mark_validity(run_records)
        for r in run_records:
            kind = r.get("kind")
            if kind == "skipped" and run < len(folders):
                continue
            key = ((kind, r["name"]) if kind in ("compare", "skipped") else
                   (kind, r.get("order"), r.get("part"), r.get("profile"), run))
            old = records.get(key)
            if (kind == "compare" and old is not None and "invalid" in r
                    and "invalid" not in old and "error" not in old):
                continue
            records[key] = {**r, "run": run}
    measured = {r["name"] for r in records.values() if r.get("kind") == "compare"}
    return [r for r in records.values()
            if not (r.get("kind") == "skipped" and r["name"] in measured)]


def repredict_section(path: Path | None) -> list[str]:
    """The current estimator (``gpu_repredict.py``) against the same measurements."""
    if path is None or not path.is_file():
        return []
    records = json.loads(path.read_text())
    rows = [r for r in records if r.get("kind") == "compare"]
    lines = ["## The estimator as calibrated, against the same measurements", "",
             ("Predictions of the estimator after this session's calibration, computed on the "
             "CPU (`benchmarks/gpu_repredict.py`); measurements as above. *Derived*: measured "
             "while an earlier out-of-memory step's tensors were still allocated, corrected by "
             "what was allocated before the step (`allocated_at_start`); peak allocated only."),
             "",
             ("| config | batch | order | pred. alloc MiB | meas. alloc MiB | err % | "
             "pred. reserved MiB | meas. reserved MiB | err % |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ea = error_pct(r["pred_allocated"], r["measured_allocated"])
        mr = r["measured_reserved"]
        er = f"{error_pct(r['pred_reserved'], mr):+.2f}" if mr else "–"
        name = r["name"] + (" (derived)" if r.get("derived") else "")
        lines.append(f"| {name} | {r['batch']} | {r['order']} | {_mib(r['pred_allocated'])} | "
                     f"{_mib(r['measured_allocated'])} | {ea:+.2f} | "
                     f"{_mib(r['pred_reserved'])} | {_mib(mr)} | {er} |")
    alloc = [abs(error_pct(r["pred_allocated"], r["measured_allocated"])) for r in rows]
    res = [abs(error_pct(r["pred_reserved"], r["measured_reserved"])) for r in rows
           if r["measured_reserved"]]
    lines.append("")
    if alloc and res:
        lines += [(f"Median |error|: peak allocated {statistics.median(alloc):.2f} % over "
                  f"{len(alloc)} configurations (worst {max(alloc):.2f} %), peak reserved "
                  f"{statistics.median(res):.2f} % over {len(res)} (worst {max(res):.2f} %)."),
                  ""]
    for r in records:
        if r.get("kind") == "max_batch":
            p = r["predicted"]
            lines.append(f"Largest emoDARTS batch at order {r['order']}: {p['this-device']} on "
                         f"this device, {p['a100-40gb']} on an A100-40GB.")
    return [*lines, ""]


def report(folders: Path | list[Path], repredict: Path | None = None) -> str:
    """The report of one run's folder, or of several (the first holds the constants, step
    times and test results; the memory records are merged, see :func:`merged_validate`)."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    constants = load(folders[0], "constants.json")
    validate = merged_validate(folders)
    timing = load(folders[0], "timing.json")
    lines = [*header(constants, folders[0]), *memory_section(validate),
             *batch_section(validate), *repredict_section(repredict),
             *constants_section(constants), *timing_section(timing),
             *pytest_section(folders[0])]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+",
                   help="a session's output folder; more: later runs' memory records")
    p.add_argument("--repredict", type=Path, help="gpu_repredict.py's output")
    p.add_argument("--write", type=Path)
    a = p.parse_args(argv)
    text = report(a.folders, a.repredict)
    print(text)
    if a.write:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from nasspeech.io import atomic_write

        atomic_write(a.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
