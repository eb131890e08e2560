"""The run config: one YAML/JSON file with the space, search, retraining and data sections.

Every hyperparameter comes from this file (none from environment variables). Unknown keys
are rejected, numbers must be finite, and validation errors name the offending field path
(``search.epochs``). Relative paths written in a config file are relative to that file's
folder (see docs/config.md).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nasspeech.data import DataConfig
from nasspeech.io import atomic_write
from nasspeech.space.config import SearchSpace, load_mapping
from nasspeech.space.loading import format_errors

#: Path fields of a run config, resolved against the config file's folder by :meth:`RunConfig.load`.
PATH_FIELDS: tuple[tuple[str, ...], ...] = (
    ("data", "root"), ("data", "manifest"), ("data", "fold_file"), ("data", "cache_dir"),
    ("data", "demo", "out_dir"),
)


class ConfigError(ValueError):
    """A run config that cannot be read or does not validate."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CollapseConfig(_Section):
    """Skip-connect collapse guard (emoDARTS §6.2).

    Every epoch the derived genotype's share of parameter-free ops (pooling, ``skip_connect``)
    is computed per component; a warning is logged when it reaches ``warn_share`` and the
    component's alphas have moved away from uniform (``min_alpha_shift``).
    Remedies: ``early_stop`` (DARTS+, Liang et al. 2019: stop the search when any cell of a
    component keeps ``max_skip`` or more ``skip_connect`` edges) and ``aux_skip`` (DARTS-,
    Chu et al. 2021: an auxiliary skip ``beta * x`` on every stride-1 mixed op, beta decaying
    linearly from ``aux_skip_beta`` to 0 over the search).
    """

    warn_share: float = Field(default=0.75, gt=0.0, le=1.0,
                              description="warn when this share of a component's kept edges "
                                          "are parameter-free ops")
    min_alpha_shift: float = Field(
        default=0.1, ge=0.0,
        description="warn only when the component's op weights have moved this far from "
                    "uniform: mean over edges of max |softmax - 1/n| * n (0 = always)")
    remedy: Literal["none", "early_stop", "aux_skip"] = Field(
        default="none", description="none, early_stop (DARTS+) or aux_skip (DARTS-)")
    max_skip: int = Field(default=2, ge=1,
                          description="early_stop: skip_connect edges per cell that stop it")
    min_epochs: int = Field(default=0, ge=0, description="early_stop never fires before this")
    aux_skip_beta: float = Field(default=1.0, ge=0.0,
                                 description="aux_skip: initial beta, decaying linearly to 0")


class _Optimisation(_Section):
    """Epochs, batches and the SGD settings shared by the search (its weights) and the
    retraining; the learning rate is cosine-annealed from ``lr`` to ``lr_min``."""

    epochs: int = Field(default=300, ge=1, description="epochs")
    batch_size: int = Field(default=64, ge=1, description="samples per step")
    lr: float = Field(default=0.025, gt=0.0, description="SGD learning rate of the weights at "
                                                         "epoch 1, cosine-annealed to lr_min")
    lr_min: float = Field(default=0.001, ge=0.0, description="learning rate at the last epoch")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(default=3e-4, ge=0.0, description="SGD weight decay")
    grad_clip: float | None = Field(default=5.0, gt=0.0,
                                    description="max gradient norm of the weights (null: off)")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="fp32, or bf16: forward passes under bf16 autocast (CPU or CUDA), fp32 "
                    "weights, alphas, loss and optimiser; recurrent layers stay fp32 "
                    "(docs/precision.md)")
    recompute_depthwise: bool = Field(
        default=False,
        description="recompute the depthwise outputs of separable and dilated convolutions "
                    "in the backward pass instead of keeping them: about a third less "
                    "activation memory for 8-12 % more step time on CPU (docs/search-step.md)")

    @model_validator(mode="after")
    def _check_lr(self) -> _Optimisation:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min {self.lr_min} is above lr {self.lr}")
        return self


class SearchConfig(_Optimisation):
    """Architecture search. Defaults are the paper's (Section 4.3); ``order`` defaults to 2
    (second-order DARTS, as in the paper); set ``order: 1`` for a ~2x cheaper step."""

    order: Literal[1, 2] = Field(default=2, description="DARTS order: 1 (first) or 2 (second)")
    hvp: Literal["finite_difference", "exact"] = Field(
        default="finite_difference",
        description="order 2: Hessian-vector product by finite difference (DARTS, radius "
                    "0.01/||v||) or exact double backward (more memory; docs/real-speech.md)")
    alpha_lr: float = Field(default=3e-4, gt=0.0, description="alpha Adam learning rate")
    alpha_betas: tuple[float, float] = Field(default=(0.5, 0.999), description="alpha Adam betas")
    alpha_weight_decay: float = Field(default=1e-3, ge=0.0, description="alpha Adam weight decay")
    alpha_fraction: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="share of the search set held out (seeded) for the alpha updates",
    )
    warmup_epochs: int = Field(default=0, ge=0, description="epochs with frozen alphas")
    sync_batchnorm: bool = Field(
        default=False,
        description="data-parallel search (several processes): BatchNorm statistics over "
                    "the global batch (one all-reduce per BatchNorm and forward) instead of each "
                    "process's slice")
    check_ranks: bool = Field(
        default=False,
        description="data-parallel search: after every epoch, check that all processes hold "
                    "bit-identical alphas, weights and buffers (a debug aid; one all-gather)")
    collapse: CollapseConfig = Field(default_factory=CollapseConfig,
                                     description="skip-connect collapse guard and remedies")


class TrainConfig(_Optimisation):
    """Retraining of the derived model (or a baseline) on a fold's training set."""

    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0,
                             description="grows linearly from 0 to this over the epochs")
    overrides: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per component: channels / cells of the derived model"
    )
    model: str = Field(default="searched", description="'searched' or a baseline name")
    baseline_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the baselines, e.g. conv_channels")
    data: Literal["train", "search+train"] = Field(
        default="train",
        description="what the model is retrained on: the fold's training split (the paper's "
                    "protocol) or its search and training splits together (DARTS practice); "
                    "never the test speakers")
    auxiliary_weight: float = Field(
        default=0.0, ge=0.0, strict=True,  # `true` is no weight
        description="DARTS's auxiliary head (searched models with a cnn component): its loss "
                    "times this is added to the training loss (DARTS: 0.4; 0: no head); "
                    "testing, model.pt and params leave the head out")


def auxiliary_error(weight: float, problem: object) -> str:
    """The message for an auxiliary head that has no place in the model it would train."""
    return f"train.auxiliary_weight {weight}: {problem}; set it to 0 to train without the head"


def _non_finite(value: Any, where: str = "") -> Iterator[str]:
    """Dotted paths of the inf/NaN numbers in a raw config mapping."""
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{where or '(top level)'}: must be a finite number (got {value})"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{where}.{i}")


class LogConfig(_Section):
    """What a run reports as it goes (observation only: it changes no result, so it is left out
    of the saved config.yaml and of the resume check, and may differ on a resume)."""

    tensorboard: bool = Field(default=False, description="TensorBoard event files in "
                              "<run dir>/tensorboard (needs the tensorboard extra)")


class RunConfig(_Section):
    """A whole run: what to search, how to search and retrain it, and on which data."""

    name: str = Field(default="run", description="run name (default run directories)")
    seed: int = Field(default=0, description="seeds weights, data order and the search split")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto",
                                                   description="auto: CUDA when available")
    threads: int | None = Field(
        default=None, ge=1,
        description="CPU threads of torch (intra-op; inter-op too where torch allows); "
                    "null: torch's choice. Results depend on it (float summation order)")
    imports: list[str] = Field(
        default_factory=list,
        description="modules imported before the config is validated (ops, hand-overs, "
                    "baselines they register): dotted names or .py files, relative to the "
                    "config's folder")
    space: SearchSpace = Field(description="the search space (docs/compose.md)")
    search: SearchConfig = Field(default_factory=SearchConfig, description="architecture search")
    train: TrainConfig = Field(default_factory=TrainConfig, description="retraining")
    data: DataConfig = Field(default_factory=DataConfig, description="corpus, folds, features "
                                                                     "(docs/data.md)")
    log: LogConfig = Field(default_factory=LogConfig, exclude=True,
                           description="observation only: not saved, not checked when a run resumes")

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        bad = list(_non_finite(data)) if isinstance(data, dict) else []
        if bad:
            raise ValueError("; ".join(bad))
        return _amp_alias(data) if isinstance(data, dict) and "amp" in data else data

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        names = {c.name for c in self.space.components}
        unknown = sorted(set(self.train.overrides) - names)
        if unknown:
            raise ValueError(f"train.overrides names unknown components {unknown}; "
                             f"components: {sorted(names)}")
        f = self.data.features
        features = (1, f.n_mfcc, f.frames)
        if tuple(self.space.input_shape) != features:
            raise ValueError(
                f"space.input_shape {list(self.space.input_shape)} does not match the features "
                f"{list(features)} (1 x data.features.n_mfcc x data.features.frames)")
        if self.train.auxiliary_weight:  # before a search that the retraining cannot use
            from nasspeech.space.derived import check_auxiliary

            try:
                check_auxiliary(self.space, self.train.overrides)
            except ValueError as exc:
                raise ValueError(auxiliary_error(self.train.auxiliary_weight, exc)) from None
        return self

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read and validate a run config; :class:`ConfigError` names the file and fields.

        Relative paths in it are resolved against its folder, and its ``imports`` are
        imported (from that folder) before validation."""
        from nasspeech.workflow.imports import import_modules

        try:
            data = load_mapping(path)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        base = Path(path).resolve().parent
        data = resolve_paths(data, base)
        imports = data.get("imports") or []
        if isinstance(imports, list):
            try:
                import_modules([str(m) for m in imports], base, origin=f"{path}: imports")
            except ImportError as exc:
                raise ConfigError(str(exc)) from None
        return cls.from_mapping(data, origin=str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], origin: str = "config") -> RunConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{origin} does not validate:\n{format_errors(exc)}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, self.to_yaml())


def _amp_alias(data: dict[str, Any]) -> dict[str, Any]:
    """The deprecated top-level ``amp``: ``true`` is ``search.precision: bf16`` and
    ``train.precision: bf16`` (an explicit fp32 there is an error naming both), ``false`` is
    the default and changes nothing."""
    data = dict(data)
    amp = data.pop("amp")
    if not isinstance(amp, bool):  # a ValueError: pydantic reports it as a field error
        raise ValueError(f"amp must be true or false (deprecated: use search.precision and "  # noqa: TRY004
                         f"train.precision), got {amp!r}")
    warnings.warn(f"config: 'amp: {str(amp).lower()}' is deprecated; write search.precision "
                  f"and train.precision ({'bf16' if amp else 'fp32'})", FutureWarning,
                  stacklevel=2)
    for section in ("search", "train") if amp else ():
        sub = data.get(section)
        sub = {} if sub is None else sub
        if not isinstance(sub, dict):
            continue  # the section's own validation reports it
        if sub.get("precision", "bf16") != "bf16":
            raise ValueError(f"amp: true contradicts {section}.precision: "
                             f"{sub['precision']} (drop the deprecated amp)")
        data[section] = {**sub, "precision": "bf16"}
    return data


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a raw config mapping whose relative :data:`PATH_FIELDS` are made absolute
    against ``base`` (``~`` is expanded). Paths left to their defaults stay as they are."""
    out = copy.deepcopy(data)
    for field in PATH_FIELDS:
        node: Any = out
        for key in field[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(field[-1]), str) and node[field[-1]]:
            node[field[-1]] = os.path.abspath(base / os.path.expanduser(node[field[-1]]))
    return out

