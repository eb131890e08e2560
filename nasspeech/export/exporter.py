"""``nasspeech export``: a retrained model as an ONNX or TorchScript file plus its contract.

The exported file is run back (onnxruntime / ``torch.jit.load``) on fresh random inputs of
the batch sizes it promises and compared with PyTorch before anything is written; a model
that does not export, or exports wrong, is an :class:`ExportError` naming the op at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasspeech.export.contract import OUTPUT_NAMES, build_contract, write_contract
from nasspeech.export.diagnose import find_culprit
from nasspeech.export.errors import ExportError, first_line
from nasspeech.export.formats import (
    FORMATS,
    OPSET,
    WithProbabilities,
    check_onnx,
    embed_contract,
    runner,
    to_onnx,
    to_torchscript,
)
from nasspeech.export.source import TrainedModel, load_trained
from nasspeech.extras import MissingExtraError, require
from nasspeech.io import atomic_write

#: exported outputs must match PyTorch's within ATOL + RTOL * |PyTorch's|
ATOL = RTOL = 1e-4
#: batch sizes checked for a dynamic-batch export
DYNAMIC_CHECK_BATCHES = (1, 3)


@dataclass
class ExportResult:
    path: Path
    contract_path: Path
    contract: dict[str, Any]


def default_path(run_dir: Path, fmt: str) -> Path:
    return run_dir / f"model{FORMATS[fmt]}"


def export_model(source: str | Path, fmt: str, out: str | Path | None = None, *,
                 dynamic_batch: bool = False, batch: int = 1,
                 overwrite: bool = False) -> ExportResult:
    """Export the model of a train run directory (or its ``model.pt``) to ``fmt``.

    ``out`` defaults to ``<run dir>/model.onnx`` / ``model.torchscript.pt``; the contract goes
    to ``<out>.json``. Without ``dynamic_batch`` the model takes batches of ``batch`` clips.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not isinstance(batch, int) or batch < 1:
        raise ExportError(f"batch must be a positive int, got {batch!r}")
    if fmt == "onnx":
        require("onnx", "onnx", "ONNX export")
        require("onnxruntime", "onnx", "ONNX export (checking the exported model)")
    trained = load_trained(source)
    path = Path(out) if out is not None else default_path(trained.run_dir, fmt)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; pass --force to replace it or choose "
                          "another --out")
    model = WithProbabilities(trained.module).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2 if dynamic_batch else batch, *trained.input_shape, generator=gen)
    batches = DYNAMIC_CHECK_BATCHES if dynamic_batch else (batch,)
    data, reason, worst = export_checked(model, example, fmt, dynamic_batch, batches)
    if data is None:
        raise ExportError(f"cannot export the {trained.name!r} model of {trained.run_dir} to "
                          f"{fmt}: {_culprit(trained, example, fmt, dynamic_batch) or reason}")
    contract = _contract(trained, fmt, path, None if dynamic_batch else batch, batches, worst)
    atomic_write(path, embed_contract(fmt, data, contract))
    return ExportResult(path, write_contract(path, contract), contract)


def export_checked(module: nn.Module, example: torch.Tensor, fmt: str, dynamic_batch: bool,
                   batches: tuple[int, ...], output_names: tuple[str, ...] = OUTPUT_NAMES
                   ) -> tuple[bytes | None, str | None, float]:
    """Export ``module`` and compare the exported file with PyTorch on random inputs of
    ``batches``: ``(bytes, None, max |diff|)``, or ``(None, reason, nan)``."""
    gen = torch.Generator().manual_seed(1)
    try:
        if fmt == "onnx":
            data = to_onnx(module, example, dynamic_batch, output_names)
            check_onnx(data)
        else:
            data = to_torchscript(module, example)
        run = runner(fmt, data)
    except MissingExtraError:
        raise
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported, in one line
        return None, first_line(exc), math.nan
    worst = 0.0
    for b in batches:
        x = torch.randn(b, *example.shape[1:], generator=gen)
        with torch.no_grad():
            ref = module(x)
        ref_np = [t.numpy() for t in (ref if isinstance(ref, (tuple, list)) else (ref,))]
        try:
            got = run(x.numpy())
        except Exception as exc:  # noqa: BLE001
            return None, f"the exported model fails at batch size {b}: {first_line(exc)}", \
                math.nan
        for want, have in zip(ref_np, got):
            if want.shape != have.shape:
                return None, (f"at batch size {b} the exported model returns shape "
                              f"{have.shape}, PyTorch {want.shape}"), math.nan
            diff = np.abs(want - have)
            if not np.all(diff <= ATOL + RTOL * np.abs(want)):
                return None, (f"at batch size {b} its outputs differ from PyTorch's (max "
                              f"|diff| {float(diff.max()):.3g}): the trace does not generalise "
                              "(Python control flow or values taken out of tensors?)"), math.nan
            worst = max(worst, float(diff.max(initial=0.0)))
    return data, None, worst


def _culprit(trained: TrainedModel, example: torch.Tensor, fmt: str,
             dynamic_batch: bool) -> str | None:
    if trained.genotype is None:
        return None

    def check(module: nn.Module, x: torch.Tensor) -> str | None:
        batches = DYNAMIC_CHECK_BATCHES if dynamic_batch else (x.shape[0],)
        return export_checked(module, x, fmt, dynamic_batch, batches, ("output",))[1]

    return find_culprit(trained.module, trained.genotype, example, check)


def _contract(trained: TrainedModel, fmt: str, path: Path, batch: int | None,
              batches: tuple[int, ...], worst: float) -> dict[str, Any]:
    from nasspeech import __version__
    from nasspeech.metrics import count_parameters

    if fmt == "onnx":
        ort = require("onnxruntime", "onnx", "ONNX export")
        checked_with = f"onnxruntime {ort.__version__}"
    else:
        checked_with = f"torch.jit.load (torch {torch.__version__})"
    genotype = trained.genotype.model_dump(mode="json") if trained.genotype else None
    return build_contract(
        fmt=fmt, file_name=path.name, model_name=trained.name,
        params=count_parameters(trained.module), class_names=trained.class_names,
        features=trained.features, input_shape=trained.input_shape, batch=batch,
        run_dir=trained.run_dir.resolve(), genotype=genotype,
        exported_with={"nasspeech": __version__, "torch": torch.__version__,
                       "onnx_opset": OPSET if fmt == "onnx" else None},
        verified={"checked_with": checked_with, "batch_sizes": list(batches),
                  "max_abs_diff": worst, "tolerance": f"{ATOL:g} + {RTOL:g} * |PyTorch|"})

