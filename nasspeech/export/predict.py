"""``nasspeech predict``: class probabilities of audio files from an exported or native model.

Audio goes through the feature pipeline the model was trained on (its contract's, or its run
directory's ``config.yaml``), then through the model: onnxruntime for ``.onnx``,
``torch.jit.load`` for TorchScript, or the rebuilt PyTorch module for a run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from nasspeech.data import FeatureConfig
from nasspeech.export.contract import contract_path, parse_contract
from nasspeech.export.errors import ExportError, first_line
from nasspeech.export.formats import (
    FORMATS,
    Runner,
    WithProbabilities,
    embedded_contract,
    module_runner,
    runner,
)
from nasspeech.export.source import load_trained
from nasspeech.extras import MissingExtraError


@dataclass
class ReadyModel:
    """A model ready to run on feature batches, and what its inputs and outputs mean."""

    run: Runner
    class_names: list[str]
    features: FeatureConfig
    sample_shape: tuple[int, ...]  # one clip, no batch axis
    batch: int | None  # None: any batch size
    kind: str  # "onnx", "torchscript" or "native"


@dataclass
class Prediction:
    path: str
    probabilities: list[float] | None = None  # in the model's class_names order
    predicted: str | None = None  # the most probable class
    error: str | None = None  # why the clip gave no features


def open_model(path: str | Path) -> ReadyModel:
    """An exported model file (with its contract beside or inside it), or a train run
    directory / its ``model.pt``."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such model file or run directory")
    if path.is_dir() or not _is_export(path) and (path.parent / "config.yaml").is_file():
        trained = load_trained(path)
        return ReadyModel(module_runner(WithProbabilities(trained.module).eval()),
                          trained.class_names, trained.features, trained.input_shape, None,
                          "native")
    contract = _contract_of(path)
    fmt = contract["format"]
    try:
        if fmt not in FORMATS:
            raise KeyError(f"format {fmt!r}")
        features = FeatureConfig.model_validate(contract["features"])
        shape = contract["input"]["shape"]
        sample, batch = tuple(int(s) for s in shape[1:]), shape[0]
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path}: bad contract: {first_line(exc)}") from None
    try:
        run = runner(fmt, str(path))
    except MissingExtraError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one clear line
        raise ExportError(f"{path}: cannot load it as {fmt}: {first_line(exc)}") from None
    return ReadyModel(run, [str(c) for c in contract["class_names"]], features, sample, batch,
                      fmt)


def _is_export(path: Path) -> bool:
    return (contract_path(path).is_file() or path.suffix == ".onnx"
            or path.name.endswith(FORMATS["torchscript"]))


def _contract_of(path: Path) -> dict:
    beside = contract_path(path)
    if beside.is_file():
        return parse_contract(beside.read_text(), str(beside))
    fmt = "onnx" if path.suffix == ".onnx" else "torchscript"
    try:
        text = embedded_contract(fmt, str(path))
    except Exception as exc:  # noqa: BLE001 - not a model file of that format
        raise ExportError(f"{path}: not an exported model (no {beside.name} beside it, and it "
                          f"does not load as {fmt}: {type(exc).__name__})") from None
    if text is None:
        raise ExportError(f"{path}: no contract: {beside.name} is missing and the file "
                          "carries none (export it with `nasspeech export`)")
    return parse_contract(text, f"{path} (embedded contract)")


def predict_files(model: ReadyModel, paths: list[str | Path]) -> list[Prediction]:
    """One :class:`Prediction` per file, in order; unreadable clips get an ``error``."""
    from nasspeech.data.features import SkipClip, file_features

    results = [Prediction(str(p)) for p in paths]
    rows, owners = [], []
    for res in results:
        try:
            m = file_features(res.path, model.features)
        except SkipClip as exc:
            res.error = exc.reason
            continue
        x = m.reshape(model.sample_shape) if m.size == np.prod(model.sample_shape) else None
        if x is None:
            raise ExportError(f"the features of {res.path} have shape {m.shape}, the model "
                              f"takes {model.sample_shape}: its contract is inconsistent")
        rows.append(x)
        owners.append(res)
    if rows:
        probs = predict_features(model, np.stack(rows).astype(np.float32))
        for res, p in zip(owners, probs):
            res.probabilities = [float(v) for v in p]
            res.predicted = model.class_names[int(np.argmax(p))]
    return results


def predict_features(model: ReadyModel, x: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) of a feature batch (N, *sample_shape), run in
    batches of the model's fixed batch size (zero-padded) when it has one."""
    if model.batch is None:
        return model.run(x)[1]
    out = []
    for start in range(0, len(x), model.batch):
        chunk = x[start : start + model.batch]
        pad = model.batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(model.run(chunk)[1][: model.batch - pad])
    return np.concatenate(out)
