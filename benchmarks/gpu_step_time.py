"""Search- and retrain-step time on a CUDA device (issue #18, part 3).

    python benchmarks/gpu_step_time.py --out DIR            # on a CUDA machine
    python benchmarks/gpu_step_time.py --out DIR --dry-run  # CPU, tiny sizes: code paths only

Times the toolkit's ``search_step`` (alpha step, then weight step; the ``nasspeech search``
loop's step) for the CNN-only yardstick (batch 16) and the full emoDARTS space (batch 64),
order 1 and 2, fp32 and with ``search.precision: bf16`` (bf16 autocast, as
``nasspeech search`` applies it); the retrain step (``weight_step`` of the derived model,
batch 64) of an emoDARTS genotype; and the no-grad forward of the per-epoch evaluation.
Each: warm-up steps, then the median of timed steps, each ended by ``cuda.synchronize``
(the step also reads its loss, a synchronisation). Writes ``DIR/timing.json``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import (
    Device,
    build_model,
    build_setup,
    cnn_yardstick,
    emodarts_space,
    guarded,
    start,
)


def _time(fn, dev: Device, warmup: int, steps: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    dev.sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        dev.sync()
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4),
            "all_s": [round(t, 4) for t in times], "warmup": warmup}


def _batch(space, batch: int, dev: Device) -> tuple[torch.Tensor, torch.Tensor]:
    with dev.torch_device:
        return (torch.randn(batch, *space.input_shape),
                torch.randint(0, space.num_classes, (batch,)))


def search_step_time(space, batch: int, order: int, bf16: bool, dev: Device,
                     steps: int) -> dict[str, Any]:
    setup = build_setup(space, batch, order, dev, "bf16" if bf16 else "fp32")

    dev.reset_peaks()
    out = _time(setup.run, dev, 2, steps)
    out["peak_allocated"] = dev.peaks()[0]  # of warm-up and timed steps
    return out


def retrain_step_time(space, batch: int, bf16: bool, dev: Device, steps: int
                      ) -> dict[str, Any]:
    """``weight_step`` of the derived model of the supernet's genotype at initialisation
    (argmax of the initial alphas: a model of the paper's size class, not a searched one)."""
    from nasspeech.search import weight_step

    model = build_model(space, dev, derive=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    batch_xy = _batch(space, batch, dev)
    model.train()

    def step() -> None:
        weight_step(model, opt, batch_xy, 5.0, precision="bf16" if bf16 else "fp32")

    out = _time(step, dev, 3, steps)
    out["params"] = sum(p.numel() for p in model.parameters())
    return out


def eval_forward_time(space, batch: int, dev: Device, steps: int) -> dict[str, Any]:
    """One batch of ``predict`` (no-grad forward, eval mode) on the supernet."""
    from nasspeech.search.loop import predict

    model = build_model(space, dev)
    batch_xy = _batch(space, batch, dev)
    return _time(lambda: predict(model, [batch_xy]), dev, 2, steps)


def main(argv: list[str] | None = None) -> int:
    started = start("gpu_step_time", __doc__, "timing.json", argv, lambda p: p.add_argument(
        "--steps", type=int, default=4, help="timed steps per setting"))
    if started is None:
        return 0
    a, dev, results = started
    emo, cnn = emodarts_space(dev.dry), cnn_yardstick(dev.dry)
    b64, b16 = (2, 2) if dev.dry else (64, 16)
    steps = 1 if dev.dry else a.steps
    jobs = [
        ("search", "emodarts", b64, 2, False, search_step_time, (emo, b64, 2, False)),
        ("search", "emodarts", b64, 1, False, search_step_time, (emo, b64, 1, False)),
        ("search", "cnn-yardstick", b16, 1, False, search_step_time, (cnn, b16, 1, False)),
        ("search", "cnn-yardstick", b16, 2, False, search_step_time, (cnn, b16, 2, False)),
        ("retrain", "emodarts", b64, None, False, retrain_step_time, (emo, b64, False)),
        ("eval", "emodarts", b64, None, False, eval_forward_time, (emo, b64)),
        ("search", "emodarts", b64, 2, True, search_step_time, (emo, b64, 2, True)),
        ("search", "emodarts", b64, 1, True, search_step_time, (emo, b64, 1, True)),
        ("retrain", "emodarts", b64, None, True, retrain_step_time, (emo, b64, True)),
    ]
    for what, space, batch, order, bf16, fn, args in jobs:
        base = {"what": what, "space": space, "batch": batch, "order": order,
                "precision": "bf16 autocast" if bf16 else "fp32", "dry_run": dev.dry}
        guarded(results, base, fn, *args, dev, steps)
        dev.cleanup()  # the setting's tensors went with its function's frame
    return 0


if __name__ == "__main__":
    sys.exit(main())
