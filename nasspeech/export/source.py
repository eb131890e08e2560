"""A retrained model read back from its ``nasspeech train`` run directory.

A train run directory holds ``config.yaml`` (space, train options, data and features),
``metrics.json`` (the model name and the class names), ``genotype.json`` (searched models) and
``model.pt`` (the state dict). The module is rebuilt exactly as ``nasspeech train`` built it
and the weights are loaded into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from nasspeech.config import ConfigError, RunConfig
from nasspeech.data import FeatureConfig
from nasspeech.export.errors import ExportError
from nasspeech.genotype import Genotype, GenotypeError
from nasspeech.workflow.checkpoint import CheckpointError, load_checkpoint

WEIGHTS = "model.pt"


@dataclass
class TrainedModel:
    """A retrained model (eval mode, on the CPU) and what its inputs and outputs mean."""

    module: nn.Module
    name: str  # "searched" or a baseline name
    class_names: list[str]
    features: FeatureConfig
    input_shape: tuple[int, ...]
    run_dir: Path
    genotype: Genotype | None


def run_dir_of(path: str | Path) -> tuple[Path, Path]:
    """(run directory, weights file) of a run directory or of its ``model.pt``."""
    path = Path(path)
    if path.is_dir():
        return path, path / WEIGHTS
    if path.is_file():
        return path.parent, path
    raise ExportError(f"{path}: no such run directory or model file")


def load_trained(path: str | Path) -> TrainedModel:
    """Rebuild the model of a train run directory (or its ``model.pt``) with its weights."""
    from nasspeech.workflow.train import build_model

    run_dir, weights = run_dir_of(path)
    for needed in (run_dir / "config.yaml", run_dir / "metrics.json", weights):
        if not needed.is_file():
            raise ExportError(
                f"{path}: not a retrained model: {needed} is missing (`nasspeech train` "
                "writes config.yaml, metrics.json and model.pt into its run directory)")
    try:
        config = RunConfig.load(run_dir / "config.yaml")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        name, class_names = str(metrics["model"]), [str(c) for c in metrics["class_names"]]
        genotype = Genotype.load(run_dir / "genotype.json") if name == "searched" else None
    except (ConfigError, GenotypeError) as exc:
        raise ExportError(str(exc).splitlines()[0]) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{run_dir / 'metrics.json'}: cannot read the model name and "
                          f"class names ({type(exc).__name__}: {exc})") from None
    try:
        module = build_model(config, genotype, name)
    except (GenotypeError, KeyError, ValueError, TypeError) as exc:
        raise ExportError(f"{run_dir}: cannot rebuild the {name!r} model from config.yaml: "
                          f"{str(exc).splitlines()[0]}") from None
    try:  # the one safe loader of the toolkit (weights_only, one line naming the file)
        state = load_checkpoint(weights)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    _load_weights(module, state, f"{weights}: the weights do not load into the {name!r} "
                  "model its config.yaml builds")
    return TrainedModel(module.cpu().eval(), name, class_names, config.data.features,
                        tuple(config.space.input_shape), run_dir, genotype)


def _load_weights(module: nn.Module, state: object, problem: str) -> None:
    """``module.load_state_dict(state)``; mismatches as one :class:`ExportError` line."""
    if not isinstance(state, dict):
        raise ExportError(f"{problem}: it holds a {type(state).__name__}, not a state dict")
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: the first one
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ExportError(f"{problem}: {lines[1] if len(lines) > 1 else lines[0]}") from None
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        parts = [f"{len(keys)} {what} (e.g. {keys[0]!r})"
                 for keys, what in ((missing, "missing"), (unexpected, "unexpected")) if keys]
        raise ExportError(f"{problem}: {', '.join(parts)}")
