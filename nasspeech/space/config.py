"""Search-space description: a pydantic model, loadable from YAML/JSON and buildable in Python."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import nn

from nasspeech.registry import REGISTRY, UnknownOpError
from nasspeech.space import limits
from nasspeech.space.handover import get_handover
from nasspeech.space.limits import short
from nasspeech.space.loading import ConfigFileError, load_mapping
from nasspeech.space.size import check_size, supernet_size

__all__ = ["ClassifierConfig", "ComponentConfig", "ConfigFileError", "HandoverConfig",
           "SearchSpace", "load_mapping"]

if TYPE_CHECKING:
    from nasspeech.genotype import Genotype
    from nasspeech.space.derived import DerivedModel
    from nasspeech.space.supernet import Supernet


_MODEL = ConfigDict(extra="forbid", allow_inf_nan=False)

# integers are strict: `true`, `4.0` or "4" is not a channel count
_Count = Annotated[int, Field(strict=True)]
_RESERVED = nn.ModuleDict()  # component names become ModuleDict keys
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _int(ge: int, le: int, **kw: Any) -> Any:
    return Field(strict=True, ge=ge, le=le, **kw)


class HandoverConfig(BaseModel):
    """Which hand-over turns a component's output into the next stage's input."""

    model_config = _MODEL
    name: str = "auto"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_and_options_fit(self) -> HandoverConfig:
        if self.name == "auto":
            if self.options:
                raise ValueError("hand-over 'auto' takes no options; name the hand-over")
            return self
        try:
            factory = get_handover(self.name).factory
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        params = list(inspect.signature(factory).parameters.values())[1:]  # after in_shape
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return self
        takes = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(self.options) - set(takes))
        if unknown:
            known = ", ".join(sorted(takes)) or "none"
            raise ValueError(f"hand-over {self.name!r} takes no option {short(unknown[0])} "
                             f"(its options: {known})")
        missing = [n for n, p in takes.items() if p.default is p.empty and n not in self.options]
        if missing:
            raise ValueError(f"hand-over {self.name!r} needs option {missing[0]!r}")
        return self


class ComponentConfig(BaseModel):
    """One component: a stack of DARTS cells over one op family."""

    model_config = _MODEL

    name: str
    family: str
    ops: list[str] = Field(min_length=1, max_length=64)
    cells: int = _int(1, limits.MAX_CELLS)
    nodes: int = _int(1, limits.MAX_NODES, default=4)
    channels: int = _int(1, limits.MAX_CHANNELS,
                         description="cnn: initial channels C; seq: the width")
    top_k: int = _int(1, limits.MAX_NODES + 1, default=2,
                      description="incoming edges kept per node")
    stem_multiplier: int = _int(1, limits.MAX_STEM_MULTIPLIER, default=3,
                                description="cnn stem width = multiplier*C")
    reductions: list[Annotated[int, Field(strict=True, ge=0)]] | None = Field(
        default=None, description="cnn: indices of reduction cells (default: cells//3, 2*cells//3)"
    )
    partial_channels: int = _int(
        1, limits.MAX_CHANNELS, default=1,
        description="PC-DARTS: mixed ops see 1/K of the channels (1 = off)",
    )
    search_bn_affine: bool = Field(
        default=False, strict=True,
        description="keep the affine parameters of BatchNorm layers inside candidate ops "
        "during the search (DARTS: off; derived models always have them)",
    )
    handover: HandoverConfig = Field(default_factory=HandoverConfig)

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name) or len(name) > limits.MAX_NAME_LENGTH:
            raise ValueError(f"component name {short(name)} must be a short identifier "
                             f"(letters, digits, _ and -; at most {limits.MAX_NAME_LENGTH})")
        if hasattr(_RESERVED, name):
            raise ValueError(f"component name {name!r} is reserved (a torch ModuleDict "
                             "attribute); choose another")
        return name

    @field_validator("handover", mode="before")
    @classmethod
    def _handover_from_str(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        families = REGISTRY.families()
        if family not in families:
            raise ValueError(f"unknown op family {short(family)}; known families: "
                             f"{', '.join(families)}")
        return family

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: list[str], info: ValidationInfo) -> list[str]:
        family = info.data.get("family")
        if family is None:
            return ops
        where = f"component {info.data.get('name')!r}"
        unknown = []
        for name in ops:
            try:
                REGISTRY.get(family, name)
            except UnknownOpError as exc:
                unknown.append((name, str(exc)))
        if unknown:
            more = (f" (also unknown: {', '.join(short(n) for n, _ in unknown[1:])})"
                    if len(unknown) > 1 else "")
            raise ValueError(f"{where}: {unknown[0][1]}{more}")
        if all(REGISTRY.get(family, name).is_zero for name in ops):
            raise ValueError(f"{where}: needs an op other than 'none'")
        if len(set(ops)) != len(ops):
            dupes = sorted({o for o in ops if ops.count(o) > 1})
            raise ValueError(f"{where}: ops listed twice: {dupes}")
        return ops

    @model_validator(mode="after")
    def _check_layout(self) -> ComponentConfig:
        where = f"component {self.name!r}"
        if self.top_k > self.nodes + 1:
            raise ValueError(
                f"{where}: top_k {self.top_k} is more than any node has inputs (with nodes: "
                f"{self.nodes} the last node has {self.nodes + 1}); use at most {self.nodes + 1}"
            )
        if self.reductions is not None and len(set(self.reductions)) != len(self.reductions):
            raise ValueError(f"{where}: reductions lists a cell twice: {short(self.reductions)}")
        if self.family == "cnn":
            for r in self.reduction_cells():
                if not 0 <= r < self.cells:
                    raise ValueError(f"{where}: reduction index {r} out of range "
                                     f"(cells 0..{self.cells - 1})")
        elif self.reductions:
            raise ValueError(f"{where}: only cnn components have reductions")
        what = "channels" if self.family == "cnn" else "width"
        if self.channels % self.partial_channels:
            raise ValueError(
                f"{where}: {what} {self.channels} not divisible by "
                f"partial_channels {self.partial_channels}"
            )
        if self.family == "cnn" and self.channels // self.partial_channels < limits.MIN_CNN_CHANNELS:
            per_op = ("" if self.partial_channels == 1 else
                      f" per mixed op (channels / partial_channels = "
                      f"{self.channels // self.partial_channels})")
            raise ValueError(
                f"{where}: channels {self.channels} is too narrow{per_op}: a cnn component "
                f"needs at least {limits.MIN_CNN_CHANNELS} (a reduction splits the channels "
                "into two halves)"
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
    model_config = _MODEL
    hidden: list[Annotated[int, Field(strict=True, ge=1, le=limits.MAX_HIDDEN)]] = Field(
        default_factory=list, max_length=limits.MAX_HIDDEN_LAYERS)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, strict=True)


class SearchSpace(BaseModel):
    """A composed search space: input shape, classes, ordered components and the head."""

    model_config = _MODEL

    name: str = Field(default="space", min_length=1, max_length=limits.MAX_NAME_LENGTH)
    input_shape: tuple[Annotated[int, Field(strict=True, ge=1, le=limits.MAX_INPUT_SIZE)], ...] = (
        Field(description="one sample, no batch axis, e.g. [1, 128, 128]", min_length=1,
              max_length=3))
    num_classes: int = _int(2, limits.MAX_CLASSES)
    components: list[ComponentConfig] = Field(min_length=1, max_length=16)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> SearchSpace:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {short(names)}")
        values = 1
        for n in self.input_shape:
            values *= n
        if values > limits.MAX_INPUT_VALUES:
            raise ValueError(f"input_shape {self.input_shape} has {values:,} values per sample "
                             f"(the limit is {limits.MAX_INPUT_VALUES:,})")
        try:
            size = supernet_size(self.components, self.input_shape, self.classifier.hidden,
                                 self.num_classes)
        except Exception:  # noqa: BLE001  (a space that cannot be sized fails when it is built)
            return self
        check_size(size, self.components, f"the supernet of space {self.name!r}")
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
        auxiliary: bool = False,
    ) -> DerivedModel:
        """The discrete model of ``genotype`` (per-component ``channels``/``cells`` overrides;
        ``auxiliary``: DARTS's auxiliary head, see :class:`~nasspeech.space.derived.DerivedModel`)."""
        from nasspeech.space.derived import DerivedModel

        return DerivedModel(self, genotype, overrides=overrides, drop_path=drop_path,
                            auxiliary=auxiliary)
