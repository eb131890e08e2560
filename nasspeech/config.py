"""The run config: one YAML/JSON file with the space, search, retraining and data sections.

Every hyperparameter comes from this file (none from environment variables). Unknown keys
are rejected, and validation errors name the offending field path (``search.epochs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nasspeech.data import DataConfig
from nasspeech.space.config import SearchSpace, load_mapping


class ConfigError(ValueError):
    """A run config that cannot be read or does not validate."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollapseConfig(_Section):
    """Skip-connect collapse guard (emoDARTS §6.2).

    Every epoch the derived genotype's share of parameter-free ops (pooling, ``skip_connect``)
    is computed per component; a warning is logged when it reaches ``warn_share``.
    Remedies: ``early_stop`` (DARTS+, Liang et al. 2019: stop the search when any cell of a
    component keeps ``max_skip`` or more ``skip_connect`` edges) and ``aux_skip`` (DARTS-,
    Chu et al. 2021: an auxiliary skip ``beta * x`` on every stride-1 mixed op, beta decaying
    linearly from ``aux_skip_beta`` to 0 over the search).
    """

    warn_share: float = Field(default=0.75, gt=0.0, le=1.0)
    remedy: Literal["none", "early_stop", "aux_skip"] = "none"
    max_skip: int = Field(default=2, ge=1)
    min_epochs: int = Field(default=0, ge=0, description="early_stop never fires before this")
    aux_skip_beta: float = Field(default=1.0, ge=0.0)


class SearchConfig(_Section):
    """Architecture search. Defaults are the paper's (Section 4.3); ``order`` defaults to 2
    (second-order DARTS, as in the paper); set ``order: 1`` for a ~2x cheaper step."""

    epochs: int = Field(default=300, ge=1)
    batch_size: int = Field(default=64, ge=1)
    order: Literal[1, 2] = 2
    lr: float = Field(default=0.025, gt=0.0)
    lr_min: float = Field(default=0.001, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=3e-4, ge=0.0)
    grad_clip: float | None = Field(default=5.0, gt=0.0)
    alpha_lr: float = Field(default=3e-4, gt=0.0)
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    alpha_weight_decay: float = Field(default=1e-3, ge=0.0)
    alpha_fraction: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="share of the search set held out (seeded) for the alpha updates",
    )
    warmup_epochs: int = Field(default=0, ge=0, description="epochs with frozen alphas")
    collapse: CollapseConfig = Field(default_factory=CollapseConfig)

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min {self.lr_min} is above lr {self.lr}")
        return self


class TrainConfig(_Section):
    """Retraining of the derived model (or a baseline) on a fold's training set."""

    epochs: int = Field(default=300, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.025, gt=0.0)
    lr_min: float = Field(default=0.001, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=3e-4, ge=0.0)
    grad_clip: float | None = Field(default=5.0, gt=0.0)
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0,
                             description="grows linearly from 0 to this over the epochs")
    overrides: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per component: channels / cells of the derived model"
    )
    model: str = Field(default="searched", description="'searched' or a baseline name")
    baseline_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the baselines, e.g. conv_channels")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min {self.lr_min} is above lr {self.lr}")
        return self


class LogConfig(_Section):
    """What a run reports as it goes (observation only: it changes no result, so it is left out
    of the saved config.yaml and of the --resume check, and may differ on a resume)."""

    tensorboard: bool = Field(default=False, description="TensorBoard event files in "
                              "<run dir>/tensorboard (needs the tensorboard extra)")


class RunConfig(_Section):
    """A whole run: what to search, how to search and retrain it, and on which data."""

    name: str = "run"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(default=False, description="bf16 autocast (CUDA or CPU)")
    space: SearchSpace
    search: SearchConfig = Field(default_factory=SearchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    log: LogConfig = Field(default_factory=LogConfig, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        names = {c.name for c in self.space.components}
        unknown = sorted(set(self.train.overrides) - names)
        if unknown:
            raise ValueError(f"train.overrides names unknown components {unknown}; "
                             f"components: {sorted(names)}")
        return self

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read and validate a run config; :class:`ConfigError` names the file and fields."""
        try:
            data = load_mapping(path)
        except (FileNotFoundError, ValueError) as exc:
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
        path = Path(path)
        path.write_text(self.to_yaml())
        return path


def format_errors(exc: ValidationError) -> str:
    """One line per error: ``  search.epochs: Input should be ... (got 0)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if err["type"] not in ("missing",) and not isinstance(
            err.get("input"), dict) else ""
        lines.append(f"  {loc}: {err['msg']}{got}")
    return "\n".join(lines)
