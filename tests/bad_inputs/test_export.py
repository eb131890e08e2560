"""Bad inputs of ``nasspeech export`` and ``nasspeech predict``: each names the culprit."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from torch import nn

from nasspeech.export import ExportError, export_model
from nasspeech.registry import REGISTRY, register_op, registering_as
from tests.bad_inputs.table import Case, check, cli, params
from tests.export.helpers import BASELINES, all_ops_config, train_run

pytest.importorskip("onnxruntime", reason="the onnx extra (a dev dependency) is not installed")

PLUGIN = "nasspeech-fake-plugin"
ROOT = Path(__file__).resolve().parents[2]


class CumMax(nn.Module):
    """Running maximum over time: fine in PyTorch and TorchScript, no ONNX symbolic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cummax(x, dim=1)[0]


class ScaleByMean(nn.Module):
    """Takes a Python float out of a tensor: a trace bakes it in as a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float(x.detach().mean())


#: run directories the cases use, filled by the module fixture below (cases run later)
RUNS: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _runs(tmp_path_factory):
    """A tiny cnn baseline and two searched models whose seq cell uses a plugin op."""
    tmp = tmp_path_factory.mktemp("runs")
    config, _ = all_ops_config(["sep_conv_3x3", "skip_connect"], ["lstm_1", "skip_connect"])
    RUNS["cnn"] = train_run(tmp / "cnn", config, None, BASELINES[0])
    with registering_as(PLUGIN):
        register_op("seq", "cummax_time")(lambda c, stride=1: CumMax())
        register_op("seq", "scale_by_mean")(lambda c, stride=1: ScaleByMean())
    try:
        for op in ("cummax_time", "scale_by_mean"):
            config, genotype = all_ops_config(["sep_conv_3x3", "skip_connect"], ["lstm_1", op])
            RUNS[op] = train_run(tmp / op, config, genotype, "searched")
        yield
    finally:
        for op in ("cummax_time", "scale_by_mean"):
            REGISTRY.remove("seq", op)
        RUNS.clear()


def _copy(run: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(run, tmp / "run"))


def _without(run: Path, tmp: Path, name: str) -> Path:
    copy = _copy(run, tmp)
    (copy / name).unlink()
    return copy


def _wrong_weights(run: Path, tmp: Path) -> Path:
    copy = _copy(run, tmp)
    torch.save({"nonsense": torch.zeros(2)}, copy / "model.pt")
    return copy


class _Payload:
    """Unpickling it would create a file: the export must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickled_weights(run: Path, tmp: Path) -> Path:
    copy = _copy(run, tmp)
    torch.save({"w": _Payload(tmp / "pwned")}, copy / "model.pt")
    return copy


def _torn_weights(run: Path, tmp: Path) -> Path:
    copy = _copy(run, tmp)
    data = (copy / "model.pt").read_bytes()
    (copy / "model.pt").write_bytes(data[: len(data) // 2])
    return copy


def _refused_and_not_run(tmp: Path):
    result = cli("export", _pickled_weights(RUNS["cnn"], tmp), "--format", "onnx")
    assert not (tmp / "pwned").exists()  # the payload never ran
    return result


def _exported_twice(run: Path, tmp: Path):
    export_model(run, "torchscript", tmp / "m.pt")
    return cli("export", run, "--format", "torchscript", "--out", tmp / "m.pt")


def _no_contract(run: Path, tmp: Path):
    export_model(run, "onnx", tmp / "m.onnx")
    (tmp / "m.onnx.json").rename(tmp / "elsewhere.json")
    # the contract embedded in the file still works: strip it to see the error
    import onnx

    proto = onnx.load(str(tmp / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp / "m.onnx"))
    return cli("predict", tmp / "m.onnx", tmp / "a.wav")


def _garbage_model(tmp: Path):
    (tmp / "m.onnx").write_bytes(b"not a model")
    return cli("predict", tmp / "m.onnx", tmp / "a.wav")


def _bad_contract(run: Path, tmp: Path):
    export_model(run, "onnx", tmp / "m.onnx")
    c = json.loads((tmp / "m.onnx.json").read_text())
    c["contract_version"] = 99
    (tmp / "m.onnx.json").write_text(json.dumps(c))
    return cli("predict", tmp / "m.onnx", tmp / "a.wav")


def _config(tmp: Path, log: object) -> Path:
    cfg = yaml.safe_load((ROOT / "examples/demo.yaml").read_text())
    cfg["log"] = log
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _without_tensorboard(tmp: Path):
    with mock.patch.dict(sys.modules, {"torch.utils.tensorboard": None}):
        res = cli("search", _config(tmp, {}), "--tensorboard", "--out", tmp / "s")
    assert not (tmp / "s").exists()  # checked before the run starts
    return res


CASES = [
    Case("export-missing-path", lambda t: cli("export", t / "nope", "--format", "onnx"),
         r"nope: no such run directory or model file"),
    Case("export-search-run-dir", lambda t: cli(
        "export", _without(RUNS["cnn"], t, "metrics.json"), "--format", "onnx"),
         r"not a retrained model: .*metrics\.json is missing"),
    Case("export-unknown-format", lambda t: cli("export", RUNS["cnn"], "--format", "tflite"),
         r"invalid choice: 'tflite'", max_lines=6),  # argparse's usage lines, then the error
    Case("export-bad-batch", lambda t: cli("export", RUNS["cnn"], "--format", "onnx",
                                           "--out", t / "m.onnx", "--batch", "0"),
         r"batch must be a positive int, got 0"),
    Case("export-batch-and-dynamic-batch", lambda t: cli(
        "export", RUNS["cnn"], "--format", "onnx", "--batch", "4", "--dynamic-batch"),
         r"--batch fixes the batch size and --dynamic-batch accepts any"),
    Case("export-pickled-weights", _refused_and_not_run,
         r"refused to load .*model\.pt: it holds objects other than tensors"),
    Case("export-torn-weights", lambda t: cli(
        "export", _torn_weights(RUNS["cnn"], t), "--format", "onnx"),
         r"cannot read .*model\.pt: not a complete torch checkpoint"),
    Case("export-wrong-weights", lambda t: cli(
        "export", _wrong_weights(RUNS["cnn"], t), "--format", "onnx"),
         r"model\.pt: the weights do not load into the 'cnn' model.*missing"),
    Case("export-existing-out", lambda t: _exported_twice(RUNS["cnn"], t),
         r"m\.pt already exists; pass --force"),
    Case("export-plugin-op-without-onnx", lambda t: export_model(
        RUNS["cummax_time"], "onnx", t / "m.onnx", dynamic_batch=True),
         rf"op seq/cummax_time \(source: {PLUGIN}\) at component 'seq', cell 0 \(cell\), "
         r"node \d: .*cummax", error=ExportError),
    Case("export-plugin-op-that-traces-wrong", lambda t: export_model(
        RUNS["scale_by_mean"], "torchscript", t / "m.pt", dynamic_batch=True),
         rf"op seq/scale_by_mean \(source: {PLUGIN}\).*differ from PyTorch",
         error=ExportError),
    Case("predict-missing-model", lambda t: cli("predict", t / "nope.onnx", t / "a.wav"),
         r"nope\.onnx: no such model file or run directory"),
    Case("predict-no-contract", lambda t: _no_contract(RUNS["cnn"], t),
         r"m\.onnx: no contract: m\.onnx\.json is missing"),
    Case("predict-garbage-model", _garbage_model, r"m\.onnx: not an exported model"),
    Case("predict-contract-version", lambda t: _bad_contract(RUNS["cnn"], t),
         r"m\.onnx\.json: contract version 99 is not supported"),
    Case("tensorboard-not-installed", _without_tensorboard,
         r"TensorBoard logging .* needs the 'tensorboard' package, which is not installed; "
         r"install it with: pip install 'nasspeech\[tensorboard\]'"),
    Case("tensorboard-config-typo", lambda t: cli(
        "search", _config(t, {"tensorbaord": True}), "--out", t / "s"),
         r"log\.tensorbaord: Extra inputs are not permitted", max_lines=6),
    Case("tensorboard-config-not-a-bool", lambda t: cli(
        "train", _config(t, {"tensorboard": "maybe"}), "--model", "cnn"),
         r"log\.tensorboard: Input should be a valid boolean", max_lines=6),
    Case("tensorboard-with-scopes", lambda t: cli(
        "cv", _config(t, {}), "--scopes", t, "--tensorboard"),
         r"--tensorboard does not reach --scopes runs: set log\.tensorboard"),
    Case("predict-missing-audio", lambda t: cli("predict", RUNS["cnn"], t / "gone.wav"),
         r"1 of 1 files gave no prediction:\s+\S*gone\.wav: unreadable: no such file"),
]


@params(CASES)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
