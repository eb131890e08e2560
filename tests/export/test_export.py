"""Exported models give PyTorch's outputs: a derived model using every built-in op of both
families and each baseline, exported to ONNX and TorchScript with a dynamic batch, run in a
fresh process that cannot import nasspeech (onnxruntime / torch.jit.load) at batch 1 and 5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nasspeech.export import export_model, load_trained
from nasspeech.workflow.datasets import eval_stream

from .helpers import BASELINES, SHAPE, builtin_ops, random_data

pytest.importorskip("onnxruntime", reason="the onnx extra (a dev dependency) is not installed")

HERE = Path(__file__).resolve().parent
MODELS = ("searched", *BASELINES)
FORMATS = ("onnx", "torchscript")
BATCHES = (1, 5)


@pytest.fixture(scope="module")
def fresh_process_outputs(trained_runs, tmp_path_factory):
    """Export every model in both formats, then run them all in one ``python -I`` process
    that cannot import nasspeech; PyTorch's outputs for the same inputs alongside."""
    tmp = tmp_path_factory.mktemp("fresh")
    gen = torch.Generator().manual_seed(42)
    inputs = {b: torch.randn(b, *SHAPE, generator=gen) for b in BATCHES}
    entries, reference = [], {}
    for name in MODELS:
        module = load_trained(trained_runs[name]).module
        with torch.no_grad():
            for b, x in inputs.items():
                logits = module(x)
                reference[name, b] = (logits.numpy(), torch.softmax(logits, 1).numpy())
                np.save(tmp / f"in_{b}.npy", x.numpy())
        for fmt in FORMATS:
            res = export_model(trained_runs[name], fmt, tmp / f"{name}.{fmt}",
                               dynamic_batch=True)
            assert res.contract["verified"]["max_abs_diff"] < 1e-4
            for b in BATCHES:
                entries.append({"model": str(res.path), "input": str(tmp / f"in_{b}.npy"),
                                "output": str(tmp / f"out_{name}_{fmt}_{b}")})
    job = tmp / "job.json"
    job.write_text(json.dumps({"entries": entries, "result": str(tmp / "result.json")}))
    proc = subprocess.run([sys.executable, "-I", str(HERE / "run_exported.py"), str(job)],
                          capture_output=True, text=True, timeout=300, cwd=tmp, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp / "result.json").read_text())
    return tmp, result, reference


def test_the_fresh_process_had_no_nasspeech(fresh_process_outputs):
    _, result, _ = fresh_process_outputs
    assert result["nasspeech_importable"] is False
    assert result["modules"] == []
    assert len(result["done"]) == len(MODELS) * len(FORMATS) * len(BATCHES)


def test_the_derived_model_uses_every_builtin_op(trained_runs):
    genotype = load_trained(trained_runs["searched"]).genotype
    for comp in genotype.components:
        assert set(comp.ops()) == set(builtin_ops(comp.family)), comp.name
    # every cnn op runs at stride 1 (normal cell) and 2 (reduction cell: edges from its inputs)
    for kind in ("normal", "reduce"):
        edges = [e for node in genotype.component("cnn").cells[kind].nodes for e in node]
        assert {e.op for e in edges} == set(builtin_ops("cnn"))
        assert all(e.source < 2 for e in edges)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS)
def test_exported_outputs_equal_pytorch(fresh_process_outputs, name, fmt, batch):
    tmp, _, reference = fresh_process_outputs
    want_logits, want_probs = reference[name, batch]
    logits = np.load(tmp / f"out_{name}_{fmt}_{batch}.logits.npy")
    probs = np.load(tmp / f"out_{name}_{fmt}_{batch}.probabilities.npy")
    assert logits.shape == want_logits.shape == (batch, 3)
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(probs, want_probs, rtol=0, atol=1e-4)
    assert np.std(want_logits) > 0  # a model that outputs constants would prove nothing


@pytest.mark.parametrize("name", MODELS)
def test_rebuilt_model_reproduces_the_runs_test_metrics(trained_runs, name):
    """load_trained rebuilds the very model the run evaluated: same confusion matrix."""
    trained = load_trained(trained_runs[name])
    metrics = json.loads((trained_runs[name] / "metrics.json").read_text())
    data = random_data()
    pred = []
    with torch.no_grad():
        for x, _ in eval_stream(data.x, data.y, data.fold(0).test, 6).epoch():
            pred += trained.module(x).argmax(1).tolist()
    true = data.y[data.fold(0).test].tolist()
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (true, pred), 1)
    assert confusion.tolist() == metrics["confusion"]
    assert trained.class_names == metrics["class_names"]


def test_fixed_batch_export_and_contract(trained_runs, tmp_path):
    res = export_model(trained_runs["cnn_lstm_att"], "onnx", tmp_path / "m.onnx", batch=4)
    c = json.loads((tmp_path / "m.onnx.json").read_text())
    assert c == res.contract
    assert c["input"]["shape"] == [4, *SHAPE] and c["input"]["batch"] == 4
    assert c["verified"]["batch_sizes"] == [4]
    assert c["class_names"] == ["anger", "happiness", "sadness"]
    assert c["features"]["n_mfcc"] == SHAPE[1] and c["features"]["frames"] == SHAPE[2]
    assert c["model"]["name"] == "cnn_lstm_att" and c["model"]["genotype"] is None
    import onnxruntime as ort

    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [4, *SHAPE]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["nasspeech_contract"]) == c  # embedded too


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load is deprecated
def test_default_path_and_model_file_argument(trained_runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_runs["cnn"], run)
    res = export_model(run / "model.pt", "torchscript")
    assert res.path == run / "model.torchscript.pt"
    assert res.contract_path == run / "model.torchscript.pt.json"
    extra = {"nasspeech_contract.json": ""}
    torch.jit.load(str(res.path), _extra_files=extra)
    assert json.loads(extra["nasspeech_contract.json"]) == res.contract
