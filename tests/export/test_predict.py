"""``nasspeech predict``: the same probabilities from the native run directory, the ONNX and
the TorchScript export, through the feature pipeline the model was trained on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from nasspeech.data.features import file_features
from nasspeech.export import export_model, load_trained, open_model, predict_files
from tests.bad_inputs.table import cli

pytest.importorskip("onnxruntime", reason="the onnx extra (a dev dependency) is not installed")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three short tones with noise, at 22.05 kHz stereo (predict resamples and mixes)."""
    tmp = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    paths = []
    for i, freq in enumerate((180.0, 450.0, 1200.0)):
        t = np.arange(int(0.7 * 22050)) / 22050
        y = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
        path = tmp / f"clip{i}.wav"
        sf.write(path, np.stack([y, 0.5 * y], 1).astype(np.float32), 22050)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def exports(trained_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports")
    out = {}
    for name in ("searched", "cnn_lstm_att"):
        out[name] = {"native": trained_runs[name]}
        out[name]["onnx"] = export_model(trained_runs[name], "onnx", tmp / f"{name}.onnx",
                                         dynamic_batch=True).path
        out[name]["torchscript"] = export_model(trained_runs[name], "torchscript",
                                                tmp / f"{name}.pt", batch=2).path
    return out


@pytest.mark.parametrize("name", ["searched", "cnn_lstm_att"])
def test_native_onnx_and_torchscript_agree(exports, clips, name):
    trained = load_trained(exports[name]["native"])
    x = torch.from_numpy(np.stack([file_features(p, trained.features) for p in clips]))
    with torch.no_grad():
        want = torch.softmax(trained.module(x.unsqueeze(1)), 1).numpy()
    for kind, path in exports[name].items():
        model = open_model(path)
        assert model.kind == ("native" if kind == "native" else kind)
        assert model.class_names == trained.class_names
        assert model.features == trained.features
        got = predict_files(model, clips)
        probs = np.array([r.probabilities for r in got])
        np.testing.assert_allclose(probs, want, rtol=0, atol=1e-4, err_msg=kind)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert [r.predicted for r in got] == [trained.class_names[i] for i in want.argmax(1)]


def test_cli_prints_a_table_and_json(exports, clips):
    res = cli("predict", exports["searched"]["onnx"], *clips)
    assert res.code == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["file", "anger", "happiness", "sadness", "predicted"]
    assert len(lines) == 1 + len(clips)
    res = cli("predict", exports["searched"]["torchscript"], clips[0], "--json")
    assert res.code == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert set(row["probabilities"]) == {"anger", "happiness", "sadness"}
    assert row["predicted"] == max(row["probabilities"], key=row["probabilities"].get)


def test_a_bad_clip_does_not_hide_the_others(exports, clips, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 16000)
    res = cli("predict", exports["cnn_lstm_att"]["native"], clips[0], silent, clips[1])
    assert res.code == 2
    assert len(res.stdout.strip().splitlines()) == 3  # header + the two good clips
    assert "1 of 3 files gave no prediction" in res.stderr and "silent.wav: silent" in res.stderr
