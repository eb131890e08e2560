"""The input contract of an exported model: ``<model file>.json`` beside it.

It says what goes in (shape, dtype, the feature pipeline that turns audio into it, with
every parameter), what comes out (logits and probabilities, in ``class_names`` order) and how
the export was checked, so that the file runs with ``onnxruntime`` or ``torch.jit.load`` and
nothing of nasspeech. The same JSON is embedded in the model file (ONNX ``metadata_props``
key ``nasspeech_contract``; TorchScript extra file ``nasspeech_contract.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasspeech.data import FeatureConfig
from nasspeech.export.errors import ExportError
from nasspeech.io import atomic_write

CONTRACT_VERSION = 1
EMBED_KEY = "nasspeech_contract"
INPUT_NAME = "features"
OUTPUT_NAMES = ("logits", "probabilities")


def contract_path(model_file: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def feature_steps(f: FeatureConfig) -> list[str]:
    """The feature pipeline of ``nasspeech.data.features.compute_features``, step by step,
    with the values it uses for ``f``."""
    n = max(1, round(f.duration * f.sample_rate))
    n_fft = min(f.n_fft, n)
    hop = min(f.hop_length, n_fft)
    n_mels = max(f.n_mels, f.n_mfcc) if f.kind == "mfcc" else f.n_mfcc
    steps = [
        (f"read the audio, average the channels to mono, resample to {f.sample_rate} Hz "
         "(librosa.resample, soxr_hq)"),
        f"zero-pad at the end or truncate to {n} samples ({f.duration:g} s)",
        (f"mel power spectrogram: librosa.feature.melspectrogram(sr={f.sample_rate}, "
         f"n_fft={n_fft}, hop_length={hop}, n_mels={n_mels})"),
        "decibels: librosa.power_to_db (ref=1.0, amin=1e-10, top_db=80)",
    ]
    if f.kind == "mfcc":
        steps.append(f"MFCCs of the log-mel: librosa.feature.mfcc(S=..., n_mfcc={f.n_mfcc})")
    steps.append(
        f"max-pool along time into {f.frames} contiguous segments (segment starts "
        f"floor(linspace(0, T, {f.frames} + 1))[:-1]); with fewer than {f.frames} frames, pad "
        "at the end with each row's minimum")
    if f.normalise == "per_clip":
        steps.append("standardise the clip: (m - m.mean()) / (m.std() + 1e-6)")
    steps.append(f"float32 array of shape (1, {f.n_mfcc}, {f.frames}); stack clips on a new "
                 "first (batch) axis")
    return steps


def build_contract(*, fmt: str, file_name: str, model_name: str, params: int,
                   class_names: list[str], features: FeatureConfig,
                   input_shape: tuple[int, ...], batch: int | None, run_dir: Path,
                   genotype: dict[str, Any] | None, exported_with: dict[str, Any],
                   verified: dict[str, Any]) -> dict[str, Any]:
    """The contract as a JSON-able dict (``batch=None``: any batch size)."""
    k = len(class_names)
    return {
        "contract_version": CONTRACT_VERSION,
        "format": fmt,
        "file": file_name,
        "input": {"name": INPUT_NAME, "shape": [batch, *input_shape], "dtype": "float32",
                  "axes": ["batch", "channel", "mfcc" if features.kind == "mfcc" else "mel",
                           "frame"][-1 - len(input_shape):],
                  "batch": "any" if batch is None else batch},
        "outputs": [
            {"name": OUTPUT_NAMES[0], "shape": [batch, k], "dtype": "float32",
             "meaning": "unnormalised class scores, columns in class_names order"},
            {"name": OUTPUT_NAMES[1], "shape": [batch, k], "dtype": "float32",
             "meaning": "softmax of the logits over the class axis"},
        ],
        "class_names": list(class_names),
        "features": features.model_dump(mode="json", exclude={"on_error"}),
        "feature_steps": feature_steps(features),
        "model": {"name": model_name, "params": params, "run_dir": str(run_dir),
                  "genotype": genotype},
        "exported_with": exported_with,
        "verified": verified,
    }


def write_contract(model_file: str | Path, contract: dict[str, Any]) -> Path:
    return atomic_write(contract_path(model_file), json.dumps(contract, indent=2) + "\n")


def parse_contract(text: str, origin: str) -> dict[str, Any]:
    """Parse and check a contract; :class:`ExportError` names ``origin``."""
    try:
        contract = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{origin}: not valid JSON: {exc}") from None
    missing = [k for k in ("contract_version", "format", "input", "class_names", "features")
               if not isinstance(contract, dict) or k not in contract]
    if missing:
        raise ExportError(f"{origin}: not a nasspeech export contract (missing {missing})")
    if contract["contract_version"] != CONTRACT_VERSION:
        raise ExportError(f"{origin}: contract version {contract['contract_version']} is not "
                          f"supported (this nasspeech reads version {CONTRACT_VERSION})")
    return contract
