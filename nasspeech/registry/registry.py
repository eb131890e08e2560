"""The op registry: candidate ops by family, filled by built-ins and plugins alike."""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import threading
from collections.abc import Callable, Iterator

from nasspeech.registry.operation import FAMILY_LAYOUTS, Operation, OpFactory
from nasspeech.registry.validation import OpContractError, check_op

BUILTIN_SOURCE = "built-in"

_current_source: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nasspeech_op_source", default=None
)


_current_registry: contextvars.ContextVar[OpRegistry | None] = contextvars.ContextVar(
    "nasspeech_op_registry", default=None
)


class UnknownOpError(KeyError):
    """An op name that is not registered in a family."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class DuplicateOpError(ValueError):
    """The same family/name registered twice without ``override=True``."""


class PluginSession:
    """What a plugin registered while it loaded: its duplicate names are collected here
    (not raised, so its other ops stay), and its ops are smoke-tested by the loader."""

    def __init__(self) -> None:
        self.duplicates: list[tuple[Operation, Operation]] = []  # (refused op, existing op)


_plugin_session: contextvars.ContextVar[PluginSession | None] = contextvars.ContextVar(
    "nasspeech_plugin_session", default=None
)


@contextlib.contextmanager
def loading_plugin(session: PluginSession) -> Iterator[PluginSession]:
    """Registrations inside this block belong to a plugin being loaded (see :class:`PluginSession`)."""
    token = _plugin_session.set(session)
    try:
        yield session
    finally:
        _plugin_session.reset(token)


@contextlib.contextmanager
def registering_as(source: str, registry: OpRegistry | None = None) -> Iterator[None]:
    """Attribute every op registered inside this block to ``source`` (used for plugins).

    With ``registry``, :func:`register_op` calls inside the block register into it instead of
    the process-wide :data:`REGISTRY` (so plugins can be loaded into a separate registry).
    """
    token = _current_source.set(source)
    reg_token = _current_registry.set(registry)
    try:
        yield
    finally:
        _current_registry.reset(reg_token)
        _current_source.reset(token)


def _default_source(factory: Callable[..., object]) -> str:
    module = getattr(factory, "__module__", "") or ""
    if module == "nasspeech" or module.startswith("nasspeech."):
        return BUILTIN_SOURCE
    return f"user:{module}" if module else "user"


class OpRegistry:
    """Holds :class:`Operation` records keyed by ``(family, name)``."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], Operation] = {}
        self._lock = threading.RLock()
        self._loaded = False
        self._loading = False
        # why ops or plugins are missing: op key -> reason, plugin -> reason
        self._rejected: dict[tuple[str, str], str] = {}
        self._failed_plugins: dict[str, str] = {}

    # -- registration ------------------------------------------------------------------
    def add(self, op: Operation, *, override: bool = False) -> Operation:
        if op.family not in FAMILY_LAYOUTS:
            known = ", ".join(sorted(FAMILY_LAYOUTS))
            raise ValueError(f"op {op.name!r}: unknown family {op.family!r} (known: {known})")
        if not op.name or not op.name.replace("_", "").isalnum():
            raise ValueError(f"op name {op.name!r} must be a non-empty identifier")
        with self._lock:
            existing = self._ops.get((op.family, op.name))
            if existing is not None and not override:
                raise DuplicateOpError(
                    f"op {op.key} is already registered by {existing.source}; "
                    f"{op.source} tried to register it again "
                    "(pass override=True to replace it on purpose)"
                )
            self._ops[(op.family, op.name)] = op
            self._rejected.pop((op.family, op.name), None)
        return op

    def note_rejected(self, op: Operation, reason: str) -> None:
        """Remember why ``op`` is not registered, for the unknown-op error."""
        with self._lock:
            if (op.family, op.name) not in self._ops:
                self._rejected[(op.family, op.name)] = reason

    def note_failed_plugin(self, plugin: str, reason: str) -> None:
        """Remember that ``plugin`` failed to load, for the unknown-op error."""
        with self._lock:
            self._failed_plugins[plugin] = reason

    def remove(self, family: str, name: str) -> None:
        with self._lock:
            self._ops.pop((family, name), None)

    def register(
        self,
        family: str,
        name: str,
        *,
        description: str | None = None,
        parametric: bool = True,
        is_zero: bool = False,
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
                source=_current_source.get() or _default_source(factory),
                tags=tuple(tags),
            )
            session = _plugin_session.get()
            if session is not None:  # a plugin: the loader checks its ops and reports
                try:
                    self.add(op, override=override)
                except DuplicateOpError:
                    session.duplicates.append((op, self._ops[(family, name)]))
                return factory
            existing = self._ops.get((family, name))
            if existing is not None and not override:
                self.add(op)  # raises DuplicateOpError naming both sources
            if op.source != BUILTIN_SOURCE:
                problem = check_op(op)
                if problem:
                    raise OpContractError(
                        f"op {op.key} (source {op.source}) was not registered: {problem} "
                        f"(contract: {FAMILY_LAYOUTS[family]})"
                    )
            self.add(op, override=override)
            return factory

        return decorator

    # -- lookup ------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        """Import the built-in ops and (unless disabled) the entry-point plugins, once."""
        if self._loaded or self._loading:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                import nasspeech.ops  # noqa: F401  (registers the built-in ops)
                from nasspeech.registry.plugins import autoload_enabled, load_plugins

                if autoload_enabled():
                    load_plugins(self)
                self._loaded = True
            finally:
                self._loading = False

    def get(self, family: str, name: str) -> Operation:
        self.ensure_loaded()
        op = self._ops.get((family, name))
        if op is not None:
            return op
        raise UnknownOpError(self._unknown_message(family, name))

    def _unknown_message(self, family: str, name: str) -> str:
        """Why ``family/name`` is not there: rejected, another family's op, a failed plugin,
        or a typo (with the closest name), then the family's known ops."""
        if family not in self.families():
            known = ", ".join(sorted(self.families())) or "none"
            return f"unknown op family {family!r} (known families: {known})"
        if (family, name) in self._rejected:
            return f"{family} op {name!r} is not available: {self._rejected[(family, name)]}"
        known_names = sorted(n for f, n in self._ops if f == family)
        others = sorted(f for f, n in self._ops if n == name and f != family)
        if others:
            hint = (f" {name!r} is a {' and '.join(others)} op: use it in a "
                    f"{others[0]} component.")
        else:
            close = difflib.get_close_matches(name, known_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
        failed = "".join(
            f" ({plugin} failed to load: {why}; the op may come from it.)"
            for plugin, why in sorted(self._failed_plugins.items())
        )
        return (
            f"unknown {family} op {name!r}.{hint}{failed} "
            f"Known {family} ops: {', '.join(known_names)}"
        )

    def list(self, family: str | None = None) -> list[Operation]:
        self.ensure_loaded()
        ops = [op for (f, _), op in self._ops.items() if family is None or f == family]
        return sorted(ops, key=lambda op: (op.family, op.name))

    def families(self) -> list[str]:
        return sorted({f for f, _ in self._ops} | set(FAMILY_LAYOUTS))

    def names(self, family: str) -> list[str]:
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
    tags: tuple[str, ...] = (),
    override: bool = False,
) -> Callable[[OpFactory], OpFactory]:
    """Register ``factory(channels, stride=1) -> nn.Module`` as candidate op ``family/name``.

    >>> @register_op("seq", "gru_1", description="1-layer GRU")
    ... def gru_1(channels, stride=1):
    ...     return MyGRU(channels)
    """
    target = _current_registry.get()
    return (REGISTRY if target is None else target).register(
        family,
        name,
        description=description,
        parametric=parametric,
        is_zero=is_zero,
        tags=tags,
        override=override,
    )


def get_op(family: str, name: str) -> Operation:
    """The registered op ``family/name``; :class:`UnknownOpError` lists the known ones."""
    return REGISTRY.get(family, name)


def list_ops(family: str | None = None) -> list[Operation]:
    """All registered ops (of one family when given), sorted by family and name."""
    return REGISTRY.list(family)
