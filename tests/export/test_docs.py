"""docs/export.md's code runs as written: its stand-alone feature function gives nasspeech's
features, and its onnxruntime / TorchScript examples give ``nasspeech predict``'s numbers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nasspeech.data import FeatureConfig
from nasspeech.data.features import file_features
from nasspeech.export import export_model, open_model, predict_files

pytest.importorskip("onnxruntime", reason="the onnx extra (a dev dependency) is not installed")

DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def write_clip(path: Path, seconds: float, rate: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    y = 0.2 * np.sin(2 * np.pi * (200 + 300 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, np.stack([y, -0.5 * y], 1).astype(np.float32), rate)
    return path


@pytest.mark.parametrize("features", [
    {},  # the defaults: 16 kHz, 8 s, 128 MFCCs x 128 frames
    {"duration": 0.5, "n_mfcc": 8, "frames": 12, "n_fft": 256, "hop_length": 64, "n_mels": 16},
    {"duration": 0.3, "n_mfcc": 20, "frames": 64, "kind": "logmel", "normalise": "none",
     "sample_rate": 8000},  # fewer frames than asked for: padded
])
def test_the_stand_alone_feature_function_matches_nasspeech(tmp_path, features):
    namespace: dict = {}
    exec(compile(python_blocks()[0], str(DOC), "exec"), namespace)  # noqa: S102 - the doc
    config = FeatureConfig(**features)
    for seed, (seconds, rate) in enumerate([(0.4, 22050), (1.0, 16000)]):
        path = write_clip(tmp_path / f"c{seed}.wav", seconds, rate, seed)
        want = file_features(path, config)
        got = namespace["clip_features"](str(path), config.model_dump())
        assert got.shape == (1, *want.shape) and got.dtype == np.float32
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the doc's torch.jit.load
def test_the_runtime_examples_print_predicts_probabilities(trained_runs, tmp_path, capsys,
                                                          monkeypatch):
    run = trained_runs["searched"]
    export_model(run, "onnx", tmp_path / "model.onnx", dynamic_batch=True)
    export_model(run, "torchscript", tmp_path / "model.torchscript.pt")
    clips = [write_clip(tmp_path / name, 0.6, 16000, k) for k, name in
             enumerate(["a.wav", "b.wav"])]
    want = [p.probabilities for p in predict_files(open_model(run), clips)]
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    namespace: dict = {}
    for block in blocks[:3]:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the doc
    printed = [ast.literal_eval(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 3  # two clips through onnxruntime, one through TorchScript
    names = ["anger", "happiness", "sadness"]
    for got, expected in zip(printed, [want[0], want[1], want[0]]):
        assert list(got) == names
        np.testing.assert_allclose([got[n] for n in names], expected, atol=2e-3)  # rounded
