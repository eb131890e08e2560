"""The baseline registry: name -> factory ``(input_shape, num_classes, **options)``, a
:class:`~nasspeech.registry.Registry` like those of ops, families and hand-overs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from nasspeech.registry import Registry, UnknownNameError

BaselineFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=BaselineFactory)


class UnknownBaselineError(UnknownNameError):
    """``build_baseline`` was asked for a name no one registered."""


#: The process-wide baseline registry.
BASELINES: Registry[BaselineFactory] = Registry("baseline", unknown_error=UnknownBaselineError)


def register_baseline(name: str, *, override: bool = False,
                      replace: bool | None = None) -> Callable[[F], F]:
    """Decorator: register ``factory(input_shape, num_classes, **options) -> nn.Module`` (a
    function or an ``nn.Module`` class) under ``name``. The model must return logits
    (B, num_classes). A taken name raises ``ValueError`` unless ``override=True``
    (``replace=`` is its former spelling)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a baseline name must be a non-empty string, got {name!r}")
    override = override or bool(replace)

    def decorator(factory: F) -> F:
        if not callable(factory):
            raise TypeError(f"baseline {name!r}: {factory!r} is not callable")
        return BASELINES.register(name, override=override)(factory)

    return decorator


def unregister_baseline(name: str) -> None:
    """Remove a registered baseline (e.g. one a test added)."""
    BASELINES.get(name)  # unknown: UnknownBaselineError naming the known ones
    BASELINES.remove(name)


def list_baselines() -> list[str]:
    """Registered names, built-ins first, in registration order."""
    return [str(n) for n in BASELINES.names()]


def check_input_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(channels, F, T)`` of one sample, all positive ints; a clear error otherwise."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be (channels, freq, time) of one sample with "
                         f"positive ints, e.g. (1, 128, 128); got {input_shape!r}")
    return shape  # type: ignore[return-value]


def build_baseline(name: str, input_shape: tuple[int, ...], num_classes: int,
                   **options: object) -> nn.Module:
    """Build the baseline ``name`` for samples of ``input_shape`` = (C, F, T) (time last).

    The model maps (B, C, F, T) to logits (B, num_classes), one row per sample; the paper's
    final softmax is the one over the class axis applied by ``CrossEntropyLoss`` (training)
    and by ``softmax(logits, dim=1)`` / ``argmax(dim=1)`` (prediction)."""
    factory = BASELINES.get(name)
    check_input_shape(input_shape)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"baseline {name!r}: num_classes must be an int >= 2, "
                         f"got {num_classes!r}")
    _check_options(name, factory, options)
    return factory(tuple(input_shape), num_classes, **options)


def _check_options(name: str, factory: BaselineFactory, options: dict[str, object]) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL
               and n not in ("input_shape", "num_classes")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"baseline {name!r} has no option(s) {unknown}; its options: {allowed}")
