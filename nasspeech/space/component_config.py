"""The parts of a search-space description: components, their hand-overs, the classifier head
(pydantic models); :class:`~nasspeech.space.search_space.SearchSpace` composes them."""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import nn

from nasspeech.registry import FAMILIES, REGISTRY, UnknownOpError, get_family
from nasspeech.space import limits
from nasspeech.space.handover import get_handover
from nasspeech.space.limits import short

__all__ = ["ClassifierConfig", "ComponentConfig", "HandoverConfig", "SpaceSpec"]

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
    edge_normalization: bool | None = Field(
        default=None, strict=True,
        description="PC-DARTS edge normalisation: a searched weight beta per incoming edge of "
        "each node (softmax over the node's edges), used in derivation too; null: on when "
        "partial_channels > 1",
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
        if family not in FAMILIES:
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
        family = get_family(self.family)
        if family.reduces:
            for r in self.reduction_cells():
                if not 0 <= r < self.cells:
                    raise ValueError(f"{where}: reduction index {r} out of range "
                                     f"(cells 0..{self.cells - 1})")
        elif self.reductions:
            reducing = sorted(f.name for f in FAMILIES.list() if f.reduces)
            raise ValueError(f"{where}: only {' and '.join(reducing) or 'no'} components have "
                             "reductions")
        what = "channels" if family.reduces else "width"
        if self.channels % self.partial_channels:
            raise ValueError(
                f"{where}: {what} {self.channels} not divisible by "
                f"partial_channels {self.partial_channels}"
            )
        if self.channels // self.partial_channels < family.min_channels:
            per_op = ("" if self.partial_channels == 1 else
                      f" per mixed op (channels / partial_channels = "
                      f"{self.channels // self.partial_channels})")
            why = " (a reduction splits the channels into two halves)" if family.reduces else ""
            raise ValueError(
                f"{where}: channels {self.channels} is too narrow{per_op}: a {self.family} "
                f"component needs at least {family.min_channels}{why}"
            )
        return self

    def uses_edge_normalization(self) -> bool:
        """Whether the supernet has PC-DARTS edge weights (beta): ``edge_normalization``, or
        by default whether ``partial_channels`` > 1."""
        if self.edge_normalization is None:
            return self.partial_channels > 1
        return self.edge_normalization

    def reduction_cells(self) -> list[int]:
        """Indices of the reduction cells (none for families without them)."""
        return get_family(self.family).reduction_cells(self)

    def cell_kinds(self) -> list[str]:
        """The alpha sets of this component (the family's cell kinds: ``normal`` and
        ``reduce`` for cnn, ``cell`` for seq)."""
        return get_family(self.family).cell_kinds(self)


class ClassifierConfig(BaseModel):
    model_config = _MODEL
    hidden: list[Annotated[int, Field(strict=True, ge=1, le=limits.MAX_HIDDEN)]] = Field(
        default_factory=list, max_length=limits.MAX_HIDDEN_LAYERS)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, strict=True)


class SpaceSpec(Protocol):
    """What the networks read of a search space (:class:`~nasspeech.space.SearchSpace`)."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    components: list[ComponentConfig]
    classifier: ClassifierConfig

    def component(self, name: str) -> ComponentConfig: ...
