"""The two export formats: write a module as ONNX or TorchScript bytes, and run such bytes.

Both are traced from the module in eval mode with PyTorch's own kernels
(:func:`nasspeech.ops.kernels.reference_kernels`, no CPU-specific autograd functions). ONNX
uses the TorchScript-based exporter (``dynamo=False``), which needs neither ``onnxscript`` nor
a new torch; a dynamic batch becomes a symbolic first axis. A traced TorchScript module takes
any batch size its ops accept.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from nasspeech.export.contract import EMBED_KEY, INPUT_NAME, OUTPUT_NAMES
from nasspeech.extras import require

#: format -> default file suffix
FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OPSET = 17
TS_EXTRA = EMBED_KEY + ".json"

#: runs a float32 batch, returns the model's outputs (logits, probabilities for a model)
Runner = Callable[[np.ndarray], list[np.ndarray]]


class WithProbabilities(nn.Module):
    """``x -> (logits, softmax(logits, dim=1))``: the exported graph's two outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, torch.softmax(logits, dim=1)


@contextlib.contextmanager
def tracing_quietly() -> Iterator[None]:
    """Eval-time tracing: no grad, PyTorch's reference kernels, no tracer chatter (the
    exporter prints whole graphs on failure; the caller reports one line instead)."""
    from nasspeech.ops.kernels import reference_kernels

    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(torch.no_grad())
        stack.enter_context(reference_kernels())
        sink = stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(sink))
        stack.enter_context(contextlib.redirect_stderr(sink))
        for fd in (1, 2):  # the exporter's C++ side prints too
            stack.enter_context(_fd_redirected(fd, sink.fileno()))
        yield


@contextlib.contextmanager
def _fd_redirected(fd: int, target: int) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (e.g. a detached process): nothing to silence
        yield
        return
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os.dup2(target, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def to_onnx(module: nn.Module, example: torch.Tensor, dynamic_batch: bool,
            output_names: tuple[str, ...] = OUTPUT_NAMES) -> bytes:
    """ONNX bytes of ``module``; its outputs are named ``output_names``."""
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (INPUT_NAME, *output_names)} if dynamic_batch else None
    with tracing_quietly():
        torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=list(output_names),
                          dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def to_torchscript(module: nn.Module, example: torch.Tensor,
                   contract: dict[str, Any] | None = None) -> bytes:
    """TorchScript bytes of ``module`` traced on ``example`` (``contract`` embedded)."""
    with tracing_quietly():
        traced = torch.jit.trace(module, example, check_trace=False)
    return save_torchscript(traced, contract)


def save_torchscript(traced: torch.jit.ScriptModule, contract: dict[str, Any] | None) -> bytes:
    buf = io.BytesIO()
    extra = {TS_EXTRA: json.dumps(contract)} if contract is not None else {}
    with _no_deprecation():
        torch.jit.save(traced, buf, _extra_files=extra)
    return buf.getvalue()


def load_torchscript(source: bytes | str, extra: dict[str, str] | None = None
                     ) -> torch.jit.ScriptModule:
    with _no_deprecation():
        return torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                              map_location="cpu", _extra_files=extra)


@contextlib.contextmanager
def _no_deprecation() -> Iterator[None]:
    """PyTorch marks TorchScript deprecated (in favour of torch.export); it still runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def embed_contract(fmt: str, data: bytes, contract: dict[str, Any]) -> bytes:
    """``data`` with the contract stored inside the model file."""
    if fmt == "torchscript":
        return save_torchscript(load_torchscript(data), contract)
    onnx = require("onnx", "onnx", "ONNX export")
    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = EMBED_KEY, json.dumps(contract)
    return proto.SerializeToString()


def embedded_contract(fmt: str, path: str) -> str | None:
    """The contract JSON stored inside a model file, if any."""
    if fmt == "torchscript":
        extra = {TS_EXTRA: ""}
        load_torchscript(path, extra)
        return extra[TS_EXTRA] or None
    onnx = require("onnx", "onnx", "reading an ONNX model")
    proto = onnx.load(path, load_external_data=False)
    return next((p.value for p in proto.metadata_props if p.key == EMBED_KEY), None)


def check_onnx(data: bytes) -> None:
    """The ONNX checker on the exported bytes (a malformed graph raises)."""
    onnx = require("onnx", "onnx", "ONNX export")
    onnx.checker.check_model(onnx.load_from_string(data))


def runner(fmt: str, source: bytes | str) -> Runner:
    """Run exported bytes (or a file path) with onnxruntime or ``torch.jit.load``."""
    if fmt == "onnx":
        ort = require("onnxruntime", "onnx", "running an ONNX model")
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: list(session.run(None, {name: np.ascontiguousarray(x, np.float32)}))
    return module_runner(load_torchscript(source))


def module_runner(module: nn.Module | torch.jit.ScriptModule) -> Runner:
    """Run a (native or TorchScript) module; its outputs as numpy arrays."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]

    return run
