"""Search-space description: a pydantic model, loadable from YAML/JSON and buildable in Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from nasspeech.registry import REGISTRY, UnknownOpError

if TYPE_CHECKING:
    from nasspeech.genotype import Genotype
    from nasspeech.space.derived import DerivedModel
    from nasspeech.space.supernet import Supernet


class HandoverConfig(BaseModel):
    """Which hand-over turns a component's output into the next stage's input."""

    model_config = ConfigDict(extra="forbid")
    name: str = "auto"
    options: dict[str, Any] = Field(default_factory=dict)


class ComponentConfig(BaseModel):
    """One component: a stack of DARTS cells over one op family."""

    model_config = ConfigDict(extra="forbid")

    name: str
    family: str
    ops: list[str] = Field(min_length=1)
    cells: int = Field(ge=1)
    nodes: int = Field(default=4, ge=1)
    channels: int = Field(ge=1, description="cnn: initial channels C; seq: the width")
    top_k: int = Field(default=2, ge=1, description="incoming edges kept per node")
    stem_multiplier: int = Field(default=3, ge=1, description="cnn stem width = multiplier*C")
    reductions: list[int] | None = Field(
        default=None, description="cnn: indices of reduction cells (default: cells//3, 2*cells//3)"
    )
    partial_channels: int = Field(
        default=1, ge=1, description="PC-DARTS: mixed ops see 1/K of the channels (1 = off)"
    )
    search_bn_affine: bool = Field(
        default=False,
        description="keep the affine parameters of BatchNorm layers inside candidate ops "
        "during the search (DARTS: off; derived models always have them)",
    )
    handover: HandoverConfig = Field(default_factory=HandoverConfig)

    @field_validator("handover", mode="before")
    @classmethod
    def _handover_from_str(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        families = REGISTRY.families()
        if family not in families:
            raise ValueError(f"unknown op family {family!r}; known families: {', '.join(families)}")
        return family

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: list[str], info: ValidationInfo) -> list[str]:
        family = info.data.get("family")
        if family is None:
            return ops
        for name in ops:
            try:
                REGISTRY.get(family, name)
            except UnknownOpError as exc:
                raise ValueError(f"component {info.data.get('name')!r}: {exc}") from None
        if all(REGISTRY.get(family, name).is_zero for name in ops):
            raise ValueError(f"component {info.data.get('name')!r}: needs an op other than 'none'")
        if len(set(ops)) != len(ops):
            dupes = sorted({o for o in ops if ops.count(o) > 1})
            raise ValueError(f"component {info.data.get('name')!r}: ops listed twice: {dupes}")
        return ops

    @model_validator(mode="after")
    def _check_layout(self) -> ComponentConfig:
        if self.family == "cnn":
            for r in self.reduction_cells():
                if not 0 <= r < self.cells:
                    raise ValueError(f"component {self.name!r}: reduction index {r} out of range")
            if self.channels % self.partial_channels:
                raise ValueError(
                    f"component {self.name!r}: channels {self.channels} not divisible by "
                    f"partial_channels {self.partial_channels}"
                )
        elif self.reductions:
            raise ValueError(f"component {self.name!r}: only cnn components have reductions")
        if self.family == "seq" and self.channels % self.partial_channels:
            raise ValueError(
                f"component {self.name!r}: width {self.channels} not divisible by "
                f"partial_channels {self.partial_channels}"
            )
        return self

    def reduction_cells(self) -> list[int]:
        if self.family != "cnn":
            return []
        if self.reductions is not None:
            return sorted(set(self.reductions))
        return sorted({self.cells // 3, 2 * self.cells // 3})

    def cell_kinds(self) -> list[str]:
        """The alpha sets of this component: ``normal`` and ``reduce`` for cnn, ``cell`` else."""
        if self.family == "cnn":
            reductions = self.reduction_cells()
            kinds = ["normal"] if len(reductions) < self.cells else []
            return kinds + (["reduce"] if reductions else [])
        return ["cell"]


class ClassifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: list[int] = Field(default_factory=list)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class SearchSpace(BaseModel):
    """A composed search space: input shape, classes, ordered components and the head."""

    model_config = ConfigDict(extra="forbid")

    name: str = "space"
    input_shape: tuple[int, ...] = Field(description="one sample, no batch axis, e.g. [1, 128, 128]")
    num_classes: int = Field(ge=2)
    components: list[ComponentConfig] = Field(min_length=1)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> SearchSpace:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {names}")
        if not 1 <= len(self.input_shape) <= 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must have 1-3 positive sizes, got {self.input_shape}")
        return self

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Load a space from YAML or JSON; a run config's ``space:`` section is accepted too."""
        data = load_mapping(path)
        if "space" in data and "components" not in data:
            data = data["space"]
        return cls.model_validate(data)

    def component(self, name: str) -> ComponentConfig:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(f"no component {name!r}; components: {[c.name for c in self.components]}")

    def with_changes(self, **component_changes: dict[str, Any]) -> SearchSpace:
        """A copy with some component fields changed, e.g. ``with_changes(cnn={"cells": 8})``."""
        data = self.model_dump()
        for comp in data["components"]:
            comp.update(component_changes.pop(comp["name"], {}))
        if component_changes:
            raise KeyError(f"no components named {sorted(component_changes)}")
        return type(self).model_validate(data)

    # -- building ----------------------------------------------------------------------
    def build_supernet(self) -> Supernet:
        from nasspeech.space.supernet import Supernet

        return Supernet(self)

    def derive(
        self,
        genotype: Genotype,
        overrides: dict[str, dict[str, int]] | None = None,
        drop_path: float = 0.0,
    ) -> DerivedModel:
        """The discrete model of ``genotype`` (per-component ``channels``/``cells`` overrides)."""
        from nasspeech.space.derived import DerivedModel

        return DerivedModel(self, genotype, overrides=overrides, drop_path=drop_path)


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}")
    if not isinstance(data, dict):
        raise ValueError(  # noqa: TRY004 - a config error, reported like the others
            f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
