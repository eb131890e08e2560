"""Who is registering: the source that registrations are attributed to, the registry they go
to, and the plugin being loaded (whose mistakes are collected instead of raised)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["PluginSession", "current_registry", "current_source", "loading_plugin",
           "plugin_session", "registering_as"]

_current_source: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nasspeech_op_source", default=None
)
_current_registry: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "nasspeech_op_registry", default=None
)


class PluginSession:
    """What a plugin registered while it loaded: its duplicate names are collected here
    (not raised, so its other ops stay), and its ops are smoke-tested by the loader."""

    def __init__(self) -> None:
        self.duplicates: list[tuple[Any, Any]] = []  # (refused op, existing op)


_plugin_session: contextvars.ContextVar[PluginSession | None] = contextvars.ContextVar(
    "nasspeech_plugin_session", default=None
)


def current_source() -> str | None:
    """The source registrations are attributed to now (None: derived from the factory)."""
    return _current_source.get()


def current_registry() -> Any:
    """The op registry :func:`~nasspeech.registry.register_op` targets now (None: global)."""
    return _current_registry.get()


def plugin_session() -> PluginSession | None:
    return _plugin_session.get()


@contextlib.contextmanager
def loading_plugin(session: PluginSession) -> Iterator[PluginSession]:
    """Registrations inside this block belong to a plugin being loaded (see :class:`PluginSession`)."""
    token = _plugin_session.set(session)
    try:
        yield session
    finally:
        _plugin_session.reset(token)


@contextlib.contextmanager
def registering_as(source: str, registry: Any = None) -> Iterator[None]:
    """Attribute every registration inside this block to ``source`` (used for plugins).

    With ``registry``, :func:`~nasspeech.registry.register_op` calls inside the block register
    into it instead of the process-wide registry (so plugins can be loaded into a separate one).
    """
    token = _current_source.set(source)
    reg_token = _current_registry.set(registry)
    try:
        yield
    finally:
        _current_registry.reset(reg_token)
        _current_source.reset(token)
