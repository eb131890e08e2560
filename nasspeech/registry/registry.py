"""The op registry: candidate ops by family, filled by built-ins and plugins alike."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from nasspeech.registry.base import BUILTIN_SOURCE, Registry, did_you_mean, source_of
from nasspeech.registry.context import (
    PluginSession,
    current_registry,
    current_source,
    loading_plugin,
    plugin_session,
    registering_as,
)
from nasspeech.registry.family import FAMILIES
from nasspeech.registry.operation import DuplicateOpError, Operation, OpFactory, UnknownOpError
from nasspeech.registry.plugins import autoload_enabled, load_plugins
from nasspeech.registry.validation import OpContractError, check_op

__all__ = ["BUILTIN_SOURCE", "REGISTRY", "DuplicateOpError", "OpRegistry", "PluginSession",
           "UnknownOpError", "get_op", "list_ops", "loading_plugin", "register_op",
           "registering_as"]


class OpRegistry(Registry[Operation]):
    """Holds :class:`Operation` records keyed by ``(family, name)``.

    The built-in ops register themselves when :mod:`nasspeech` is imported; entry-point
    plugins are loaded on first lookup (:meth:`ensure_loaded`).
    """

    def __init__(self) -> None:
        super().__init__("op", unknown_error=UnknownOpError, duplicate_error=DuplicateOpError)
        self._loaded = False
        self._loading = False
        # why ops or plugins are missing: op key -> reason, plugin -> reason
        self._rejected: dict[tuple[str, str], str] = {}
        self._failed_plugins: dict[str, str] = {}

    @property
    def _ops(self) -> dict[Hashable, Operation]:
        """The records by ``(family, name)`` (the live dict)."""
        return self._entries

    def label(self, key: Hashable) -> str:
        family, name = key  # type: ignore[misc]
        return f"{family}/{name}"

    # -- registration ------------------------------------------------------------------
    @staticmethod
    def _check_record(op: Operation) -> None:
        if op.family not in FAMILIES:
            known = ", ".join(sorted(str(f) for f in FAMILIES.names()))
            raise ValueError(f"op {op.name!r}: unknown family {op.family!r} (known: {known})")
        if not op.name or not op.name.replace("_", "").isalnum():
            raise ValueError(f"op name {op.name!r} must be a non-empty identifier")

    def add(self, op: Operation, *, override: bool = False,  # type: ignore[override]
            source: str | None = None) -> Operation:
        self._check_record(op)
        with self._lock:
            super().add((op.family, op.name), op, override=override, source=op.source)
            self._rejected.pop((op.family, op.name), None)
        return op

    def note_rejected(self, op: Operation, reason: str) -> None:
        """Remember why ``op`` is not registered, for the unknown-op error."""
        with self._lock:
            if (op.family, op.name) not in self._entries:
                self._rejected[(op.family, op.name)] = reason

    def note_failed_plugin(self, plugin: str, reason: str) -> None:
        """Remember that ``plugin`` failed to load, for the unknown-op error."""
        with self._lock:
            self._failed_plugins[plugin] = reason

    def remove(self, family: str, name: str | None = None) -> None:  # type: ignore[override]
        key = family if name is None else (family, name)
        super().remove(key)

    def register(  # type: ignore[override]
        self,
        family: str,
        name: str,
        *,
        description: str | None = None,
        parametric: bool = True,
        is_zero: bool = False,
        identity: bool = False,
        tags: tuple[str, ...] = (),
        override: bool = False,
    ) -> Callable[[OpFactory], OpFactory]:
        """Decorator registering ``factory(channels, stride=1) -> nn.Module`` as an op."""

        def decorator(factory: OpFactory) -> OpFactory:
            doc = (factory.__doc__ or "").strip().splitlines()
            op = Operation(
                family=family,
                name=name,
                factory=factory,
                description=description if description is not None else (doc[0] if doc else ""),
                parametric=parametric,
                is_zero=is_zero,
                identity=identity,
                source=current_source() or source_of(factory),
                tags=tuple(tags),
            )
            session = plugin_session()
            if session is not None:  # a plugin: the loader checks its ops and reports
                try:
                    self.add(op, override=override)
                except DuplicateOpError:
                    session.duplicates.append((op, self._entries[(family, name)]))
                return factory
            self._check_record(op)
            existing = self._entries.get((family, name))
            if existing is not None and not override:
                self.add(op)  # raises DuplicateOpError naming both sources
            if op.source != BUILTIN_SOURCE:
                problem = check_op(op)
                if problem:
                    raise OpContractError(
                        f"op {op.key} (source {op.source}) was not registered: {problem} "
                        f"(contract: {FAMILIES.get(family).layout})"
                    )
            self.add(op, override=override)
            return factory

        return decorator

    # -- lookup ------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        """Load the entry-point plugins (unless disabled), once."""
        if self._loaded or self._loading:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                if autoload_enabled():
                    load_plugins(self)
                self._loaded = True
            finally:
                self._loading = False

    def get(self, family: str, name: str | None = None) -> Operation:  # type: ignore[override]
        if name is None:  # the generic form: get((family, name))
            family, name = family  # type: ignore[misc]
        self.ensure_loaded()
        op = self._entries.get((family, name))
        if op is not None:
            return op
        raise UnknownOpError(self.unknown_message((family, name)))

    def unknown_message(self, key: Hashable) -> str:
        """Why ``family/name`` is not there: rejected, another family's op, a failed plugin,
        or a typo (with the closest name), then the family's known ops."""
        family, name = key  # type: ignore[misc]
        if family not in self.families():
            known = ", ".join(sorted(self.families())) or "none"
            return f"unknown op family {family!r} (known families: {known})"
        if (family, name) in self._rejected:
            return f"{family} op {name!r} is not available: {self._rejected[(family, name)]}"
        known_names = sorted(n for f, n in self._entries if f == family)  # type: ignore[misc]
        others = sorted(f for f, n in self._entries if n == name and f != family)  # type: ignore[misc]
        if others:
            hint = (f" {name!r} is a {' and '.join(others)} op: use it in a "
                    f"{others[0]} component.")
        else:
            hint = did_you_mean(name, known_names)
        failed = "".join(
            f" ({plugin} failed to load: {why}; the op may come from it.)"
            for plugin, why in sorted(self._failed_plugins.items())
        )
        return (
            f"unknown {family} op {name!r}.{hint}{failed} "
            f"Known {family} ops: {', '.join(known_names)}"
        )

    def list(self, family: str | None = None) -> list[Operation]:  # type: ignore[override]
        self.ensure_loaded()
        ops = [op for op in self._entries.values() if family is None or op.family == family]
        return sorted(ops, key=lambda op: (op.family, op.name))

    def families(self) -> list[str]:
        return sorted({op.family for op in self._entries.values()}
                      | {str(f) for f in FAMILIES.names()})

    def names(self, family: str | None = None) -> list[str]:  # type: ignore[override]
        return [op.name for op in self.list(family)]


#: The process-wide registry behind the top-level API.
REGISTRY = OpRegistry()


def register_op(
    family: str,
    name: str,
    *,
    description: str | None = None,
    parametric: bool = True,
    is_zero: bool = False,
    identity: bool = False,
    tags: tuple[str, ...] = (),
    override: bool = False,
) -> Callable[[OpFactory], OpFactory]:
    """Register ``factory(channels, stride=1) -> nn.Module`` as candidate op ``family/name``.

    Traits: ``parametric=False`` for parameter-free ops, ``is_zero=True`` for the ``none``
    op, ``identity=True`` for an op that is the identity at stride 1 (see :class:`Operation`).

    >>> @register_op("seq", "gru_1", description="1-layer GRU")
    ... def gru_1(channels, stride=1):
    ...     return MyGRU(channels)
    """
    target = current_registry()
    return (REGISTRY if target is None else target).register(
        family,
        name,
        description=description,
        parametric=parametric,
        is_zero=is_zero,
        identity=identity,
        tags=tags,
        override=override,
    )


def get_op(family: str, name: str) -> Operation:
    """The registered op ``family/name``; :class:`UnknownOpError` lists the known ones."""
    return REGISTRY.get(family, name)


def list_ops(family: str | None = None) -> list[Operation]:
    """All registered ops (of one family when given), sorted by family and name."""
    return REGISTRY.list(family)
