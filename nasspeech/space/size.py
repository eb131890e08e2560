"""How big a space's supernet or a derived model would be, known before anything is built.

Parameters are counted on modules built on the meta device (no memory is allocated), one per
distinct (ops, width, stride), and multiplied by how often each occurs; hand-overs run on meta
tensors for their output shapes. :func:`check_size` turns an absurd size into an error that
names the component and its fields, instead of an allocation that never ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import Any, Protocol

import torch
from torch import nn

from nasspeech.registry import Family, Operation, get_family, get_op
from nasspeech.space.handover import default_handover, get_handover
from nasspeech.space.mixed_op import MixedOp
from nasspeech.space.plan import CellSlot, ComponentShape, cell_plan, output_shape

#: Most parameters a supernet or derived model may have (4 GB of float32 weights).
MAX_PARAMETERS = 1_000_000_000
#: Most candidate-op modules one supernet component may hold (DARTS: 8 x 14 x 7 = 784).
MAX_OP_MODULES = 50_000


class SpaceTooLargeError(ValueError):
    """A space (or the model derived from it) far beyond anything that can be trained."""


class _Handover(Protocol):
    name: str
    options: dict[str, Any]


class SizedComponent(ComponentShape, Protocol):
    name: str
    ops: list[str]
    nodes: int
    partial_channels: int
    search_bn_affine: bool
    handover: _Handover


@dataclass
class ModelSize:
    """Parameters and candidate-op modules per component (the head counted as ``head``)."""

    parameters: dict[str, int] = field(default_factory=dict)
    op_modules: dict[str, int] = field(default_factory=dict)

    @property
    def total_parameters(self) -> int:
        return sum(self.parameters.values())


# (slot, stride) -> (parameters, op modules) of one edge
EdgeCounter = Callable[[CellSlot, int], tuple[int, int]]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _MetaCounter:
    """Parameter counts of modules built on the meta device, cached by key."""

    def __init__(self) -> None:
        self._cache: dict[tuple, int] = {}

    def __call__(self, key: tuple, build: Callable[[], nn.Module]) -> int:
        if key not in self._cache:
            with torch.device("meta"):
                self._cache[key] = _count(build())
        return self._cache[key]


def _handover_shape(cfg: SizedComponent | None, in_shape: tuple[int, ...], target: str,
                    count: _MetaCounter) -> tuple[tuple[int, ...], int]:
    name = cfg.handover.name if cfg is not None else "auto"
    options = cfg.handover.options if cfg is not None else {}
    if name == "auto":
        name = default_handover(len(in_shape), target, cfg.family if cfg is not None else None)
    with torch.device("meta"):
        module = get_handover(name).factory(tuple(in_shape), **options)
        out = module(torch.zeros(1, *in_shape))
    return tuple(out.shape[1:]), _count(module)


def _component(cfg: SizedComponent, in_shape: tuple[int, ...], n_concat: int,
               edges: Callable[[CellSlot], tuple[int, int]], count: _MetaCounter,
               cells: int | None = None, channels: int | None = None,
               ) -> tuple[int, int, tuple[int, ...]]:
    """(parameters, op modules, output shape) of one component."""
    layout = get_family(cfg.family)
    stem_width, slots, out_channels = cell_plan(cfg, n_concat, cells, channels)
    params = count(("stem", cfg.family, in_shape, stem_width),
                   partial(layout.stem, in_shape, stem_width))
    modules = 0
    for slot in slots:
        params += count(("pre", cfg.family, slot.c_prev_prev, slot.width, slot.reduction_prev),
                        partial(layout.preprocess, slot.c_prev_prev, slot.width,
                                slot.reduction_prev))
        params += count(("pre", cfg.family, slot.c_prev, slot.width, False),
                        partial(layout.preprocess, slot.c_prev, slot.width, False))
        params += count(("combine", cfg.family, n_concat, slot.width),
                        partial(_combine, layout, n_concat, slot.width))
        p, m = edges(slot)
        params, modules = params + p, modules + m
    return params, modules, output_shape(cfg, in_shape, slots, out_channels)


def _combine(layout: Family, n_concat: int, width: int) -> nn.Module:
    return layout.combine(n_concat, width)[0]


def _stride(slot: CellSlot, source: int) -> int:
    return 2 if slot.kind == "reduce" and source < 2 else 1


def _size(components: Sequence[SizedComponent], input_shape: tuple[int, ...],
          hidden: Sequence[int], num_classes: int,
          component: Callable[[SizedComponent, tuple[int, ...], _MetaCounter],
                              tuple[int, int, tuple[int, ...]]]) -> ModelSize:
    count = _MetaCounter()
    size = ModelSize()
    shape, _ = _handover_shape(None, tuple(input_shape), components[0].family, count)
    for i, cfg in enumerate(components):
        params, modules, out = component(cfg, shape, count)
        target = components[i + 1].family if i + 1 < len(components) else "head"
        shape, handover_params = _handover_shape(cfg, out, target, count)
        size.parameters[cfg.name] = params + handover_params
        size.op_modules[cfg.name] = modules
    widths = [shape[0], *hidden, num_classes]
    size.parameters["head"] = sum(a * b + b for a, b in pairwise(widths))
    return size


def supernet_size(components: Sequence[SizedComponent], input_shape: tuple[int, ...],
                  hidden: Sequence[int], num_classes: int) -> ModelSize:
    """The size of the supernet of a space with these components and head."""

    def component(cfg: SizedComponent, in_shape: tuple[int, ...], count: _MetaCounter):
        ops = [get_op(cfg.family, name) for name in cfg.ops]
        layout = get_family(cfg.family)
        computed = sum(not op.is_zero for op in ops)

        def edges(slot: CellSlot) -> tuple[int, int]:
            strides = [_stride(slot, s) for j in range(cfg.nodes) for s in range(2 + j)]
            params = 0
            for stride in set(strides):
                key = ("mixed", cfg.family, tuple(cfg.ops), slot.width, stride,
                       cfg.partial_channels, cfg.search_bn_affine)
                params += strides.count(stride) * count(key, partial(
                    MixedOp, ops, slot.width, stride, layout, cfg.partial_channels,
                    cfg.search_bn_affine))
            return params, len(strides) * computed

        return _component(cfg, in_shape, cfg.nodes, edges, count)

    return _size(components, input_shape, hidden, num_classes, component)


def derived_size(components: Sequence[SizedComponent], input_shape: tuple[int, ...],
                 hidden: Sequence[int], num_classes: int, genotype: Any,
                 overrides: dict[str, dict[str, int]] | None = None) -> ModelSize:
    """The size of the model ``genotype`` derives (with per-component ``overrides``)."""
    overrides = overrides or {}

    def component(cfg: SizedComponent, in_shape: tuple[int, ...], count: _MetaCounter):
        cells = genotype.component(cfg.name).cells
        n_concat = max(len(c.concat) for c in cells.values())

        def edges(slot: CellSlot) -> tuple[int, int]:
            params = modules = 0
            for node in cells[slot.kind].nodes:
                for e in node:
                    op: Operation = get_op(cfg.family, e.op)
                    stride = _stride(slot, e.source)
                    params += count(("op", op.key, slot.width, stride),
                                    partial(op.build, slot.width, stride))
                    modules += 1
            return params, modules

        o = overrides.get(cfg.name, {})
        return _component(cfg, in_shape, n_concat, edges, count, o.get("cells"),
                          o.get("channels"))

    return _size(components, input_shape, hidden, num_classes, component)


def check_size(size: ModelSize, components: Sequence[SizedComponent], what: str,
               overrides: dict[str, dict[str, int]] | None = None) -> None:
    """Raise :class:`SpaceTooLargeError` if ``size`` is beyond :data:`MAX_PARAMETERS` or a
    component beyond :data:`MAX_OP_MODULES`, naming the component and its fields."""
    overrides = overrides or {}

    def fields(cfg: SizedComponent) -> str:
        o = overrides.get(cfg.name, {})
        return (f"channels {o.get('channels', cfg.channels)}, cells {o.get('cells', cfg.cells)}, "
                f"nodes {cfg.nodes}, {len(cfg.ops)} ops")

    for cfg in components:
        if size.op_modules.get(cfg.name, 0) > MAX_OP_MODULES:
            raise SpaceTooLargeError(
                f"component {cfg.name!r} ({fields(cfg)}): {what} would hold "
                f"{size.op_modules[cfg.name]:,} candidate-op modules (the limit is "
                f"{MAX_OP_MODULES:,}); lower cells, nodes or ops")
    total = size.total_parameters
    if total > MAX_PARAMETERS:
        name, biggest = max(size.parameters.items(), key=lambda kv: kv[1])
        by_name = {c.name: c for c in components}
        culprit = (f"component {name!r} ({fields(by_name[name])})" if name in by_name
                   else "the classifier head")
        raise SpaceTooLargeError(
            f"{what} would have {total:.3g} parameters ({4 * total / 2**30:,.0f} GiB as "
            f"float32), {biggest:.3g} of them in {culprit}; the limit is {MAX_PARAMETERS:.0e}: "
            "lower channels or cells")
