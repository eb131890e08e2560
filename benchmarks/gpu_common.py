"""Shared by the GPU benchmarks (``gpu_memory_validation``, ``gpu_constants``, ``gpu_step_time``):
the spaces they run, the device (CUDA, or the CPU for a ``--dry-run`` of the same code at tiny
sizes), one search step's real memory, and incremental JSON results.

A dry run never produces a number for a report: its memory figures are 0 and its records
carry ``"dry_run": true``; it only proves that the code paths run.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
EMODARTS = ROOT / "examples" / "emodarts.yaml"

CNN_OPS = ["max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
           "dil_conv_5x5", "conv_7x1_1x7", "skip_connect", "none"]
SEQ_OPS = ["lstm_1", "lstm_2", "lstm_3", "lstm_4", "lstm_att_1", "lstm_att_2", "rnn_1", "rnn_2",
           "rnn_3", "rnn_4", "rnn_att_1", "rnn_att_2", "skip_connect", "none"]


def emodarts_space(dry: bool = False, **cnn_changes: Any):
    """The paper's space (``examples/emodarts.yaml``); a dry run shrinks it to 1x8x8 inputs,
    widths 4 and 1 + 1 cells (every op kept)."""
    from nasspeech.space.config import SearchSpace

    space = SearchSpace.from_file(EMODARTS)
    if dry:
        space = space.model_copy(update={"input_shape": (1, 8, 8)}).with_changes(
            cnn={"channels": 4, "cells": 1, "nodes": 2}, seq={"channels": 4, "cells": 1})
    return space.with_changes(cnn=cnn_changes) if cnn_changes else space


def cnn_yardstick(dry: bool = False):
    """The CNN-only yardstick of docs/search-step.md: every Table-2 CNN op, 8 channels,
    4 cells x 4 nodes, 1x128x128 (dry run: 1x8x8, 1 cell x 2 nodes)."""
    from nasspeech.space.config import SearchSpace

    size, cells, nodes = (8, 1, 2) if dry else (128, 4, 4)
    return SearchSpace.model_validate({
        "name": "cnn-yardstick", "input_shape": [1, size, size], "num_classes": 4,
        "components": [{"name": "cnn", "family": "cnn", "ops": CNN_OPS, "cells": cells,
                        "nodes": nodes, "channels": 8}]})


def seq_only(dry: bool = False):
    """emoDARTS's sequential component alone (all 14 SeqNN ops, 2 cells x 3 nodes, width 128)
    on 128 frames x 128 features (dry run: 4 x 4, width 4)."""
    from nasspeech.space.config import SearchSpace

    t, width = (4, 4) if dry else (128, 128)
    return SearchSpace.model_validate({
        "name": "seq-only", "input_shape": [t, t], "num_classes": 4,
        "components": [{"name": "seq", "family": "seq", "ops": SEQ_OPS, "cells": 2,
                        "nodes": 3, "channels": width}]})


@dataclass
class Device:
    """CUDA, or the CPU in a dry run (memory statistics read as 0)."""

    dry: bool

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu" if self.dry else "cuda")

    def sync(self) -> None:
        if not self.dry:
            torch.cuda.synchronize()

    def reset_peaks(self) -> None:
        if not self.dry:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peaks(self) -> tuple[int, int]:
        if self.dry:
            return 0, 0
        return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()

    def allocated(self) -> int:
        return 0 if self.dry else torch.cuda.memory_allocated()

    def total_memory(self) -> int:
        if self.dry:
            return 150 * 1024**3
        return torch.cuda.get_device_properties(0).total_memory

    def used_outside_allocator(self) -> int:
        """Device memory in use that the caching allocator does not own (the CUDA context,
        loaded kernels, library handles): ``total - free - reserved``. Only meaningful while
        no other process uses the device."""
        if self.dry:
            return 0
        free, total = torch.cuda.mem_get_info()
        return total - free - torch.cuda.memory_reserved()

    def cleanup(self) -> None:
        gc.collect()
        if not self.dry:
            torch.cuda.empty_cache()


def env_info(dev: Device) -> dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "dry_run": dev.dry,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if not dev.dry:
        props = torch.cuda.get_device_properties(0)
        info.update(device=torch.cuda.get_device_name(0), total_memory=props.total_memory,
                    capability=list(torch.cuda.get_device_capability(0)),
                    multiprocessors=props.multi_processor_count,
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
    return info


def build_model(space, dev: Device, derive: bool = False) -> torch.nn.Module:
    """The supernet of ``space`` (or, ``derive``, the derived model of its genotype at
    initialisation), seeded, built on the CPU and moved to ``dev`` as ``nasspeech search``
    and ``train`` do (moving flattens the RNN weights into the one chunk cuDNN uses; built
    on the device they would stay apart and be copied at every call)."""
    torch.manual_seed(0)
    model = space.build_supernet()
    if derive:
        model = space.derive(model.genotype())
    return model.to(dev.torch_device)


def build_setup(space, batch: int, order: int, dev: Device, precision: str = "fp32"):
    """The toolkit's search step (``nasspeech.memory.setup``) on ``dev``."""
    from nasspeech.config import SearchConfig
    from nasspeech.memory.setup import make_setup

    model = build_model(space, dev)
    with dev.torch_device:
        return make_setup(model, space, batch, SearchConfig(order=order, precision=precision))


def step_memory(space, batch: int, order: int, dev: Device,
                record: bool = False) -> dict[str, Any]:
    """One warm-up step (optimiser state, leftover gradients, cuBLAS/cuDNN handles), then
    ``empty_cache``, peak reset, one measured step: peak allocated/reserved and its time.
    ``record``: also the allocator's event stream of the measured step (``events``: action
    code, block size, address; see :func:`recorded_events`). ``allocated_at_start``: what
    was still allocated before the model was built (leftovers of an earlier measurement
    would inflate the peak: it must be 0 or the cuBLAS workspace)."""
    dev.cleanup()
    at_start = dev.allocated()
    setup = build_setup(space, batch, order, dev)
    try:
        setup.run()
        dev.reset_peaks()
        if record:
            _start_recording(dev)
        t0 = time.perf_counter()
        setup.run()
        dev.sync()
        seconds = time.perf_counter() - t0
        alloc, reserved = dev.peaks()
        events = recorded_events(dev) if record else None
    finally:
        del setup
        dev.cleanup()
    out = {"measured_allocated": alloc, "measured_reserved": reserved,
           "step_s": round(seconds, 4), "allocated_at_start": at_start}
    if events is not None:
        out["events"] = events
    return out


def runs(space, batch: int, order: int, dev: Device, dry_oom_above: int | None = None
         ) -> bool:
    """Whether a search step (warm-up + one more) runs without running out of memory.
    A dry run pretends to run out above ``dry_oom_above`` (to exercise that path)."""
    ok = True
    try:
        if dev.dry and dry_oom_above is not None and batch > dry_oom_above:
            raise torch.cuda.OutOfMemoryError("dry run: pretend out of memory")
        step_memory(space, batch, order, dev)
    except torch.cuda.OutOfMemoryError:
        ok = False
    # only now: while the exception was alive, its traceback's frames held the step's
    # tensors (tens of GiB, and in reference cycles that only a collection frees)
    dev.cleanup()
    return ok


#: allocator trace actions kept by :func:`recorded_events`
ACTIONS = {"alloc": 1, "free_completed": 2, "segment_alloc": 3, "segment_free": 4}


def _start_recording(dev: Device) -> None:
    if not dev.dry:
        options = {"enabled": "all", "context": None, "stacks": "python",
                   "max_entries": 2_000_000}
        try:  # a fresh history (older versions keep the last one's events)
            torch.cuda.memory._record_memory_history(**options, clear_history=True)
        except TypeError:
            torch.cuda.memory._record_memory_history(**options)


def recorded_events(dev: Device) -> list[list[int]]:
    """The recorded allocator events as ``[action code, size, address]`` (codes:
    :data:`ACTIONS`), and recording stopped."""
    if dev.dry:
        return [[1, 512, 0], [2, 512, 0]]
    try:
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    out = []
    for trace in snapshot.get("device_traces", []):
        for e in trace:
            code = ACTIONS.get(e.get("action"))
            if code is not None:
                out.append([code, int(e.get("size", 0)), int(e.get("addr", 0))])
    return out


class Results:
    """A JSON list under ``path``, rewritten atomically after every record (a run cut short
    keeps what it measured)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        from nasspeech.io import atomic_write

        self.records.append(record)
        atomic_write(self.path, json.dumps(self.records, indent=1))
        brief = {k: v for k, v in record.items() if k != "events"}
        print(json.dumps(brief), flush=True)


def guarded(results: Results, base: dict[str, Any], fn, *args: Any, **kwargs: Any) -> None:
    """``results.add({**base, **fn(...)})``; an exception becomes the record's ``error``."""
    t0 = time.perf_counter()
    try:
        record = {**base, **fn(*args, **kwargs)}
    except Exception as exc:  # noqa: BLE001 - recorded, the next measurement goes on
        record = {**base, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    results.add(record)


def start(name: str, doc: str, result: str, argv: list[str] | None,
          more_args: Callable[[argparse.ArgumentParser], None] | None = None,
          ) -> tuple[argparse.Namespace, Device, Results] | None:
    """A benchmark's command line (``--out DIR``, ``--dry-run``, and ``more_args``), its
    device and its results file ``DIR/result``; None, after saying so, without CUDA (and
    without ``--dry-run``)."""
    p = argparse.ArgumentParser(prog=name, description=doc.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the results")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: code paths only")
    if more_args is not None:
        more_args(p)
    a = p.parse_args(argv)
    dev = Device(a.dry_run)
    if not dev.dry and not torch.cuda.is_available():
        print(f"{name}: no CUDA device; nothing measured (skipped).")
        return None
    a.out.mkdir(parents=True, exist_ok=True)
    return a, dev, Results(a.out / result)
