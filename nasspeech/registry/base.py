"""One generic registry for every kind of plug-in: ops, families, hand-overs, baselines.

A :class:`Registry` maps a key (a name, or ``(family, name)`` for ops) to an entry. Every
registry speaks the same vocabulary: ``register`` (a decorator) or ``add``, ``get``,
``list``, ``names``, ``remove``; a taken key raises :class:`DuplicateNameError` unless
``override=True``; an unknown key raises :class:`UnknownNameError`, whose message suggests
the closest known name and lists them all.

This module is the leaf of nasspeech: it imports nothing from the package. The built-ins
register themselves from their own packages, through the same public calls a plugin uses.
"""

from __future__ import annotations

import difflib
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from nasspeech.registry.context import current_source

__all__ = ["BUILTIN_SOURCE", "DuplicateNameError", "Registry", "UnknownNameError",
           "did_you_mean", "source_of"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

BUILTIN_SOURCE = "built-in"


class UnknownNameError(KeyError):
    """A name no one registered (a ``KeyError`` whose message prints without quotes)."""

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """A name registered twice without ``override=True``."""


def did_you_mean(name: str, known: list[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``known``, or an empty string."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def source_of(obj: object) -> str:
    """``built-in`` for nasspeech's own objects, else ``user:<module>``."""
    module = getattr(obj, "__module__", "") or ""
    if module == "nasspeech" or module.startswith("nasspeech."):
        return BUILTIN_SOURCE
    return f"user:{module}" if module else "user"


class Registry(Generic[T]):
    """Entries of one kind of plug-in (``kind`` names it in messages, e.g. ``"hand-over"``).

    ``unknown_error`` / ``duplicate_error`` are the exception classes raised (subclasses of
    :class:`UnknownNameError` / :class:`DuplicateNameError`), so each kind keeps its own.
    """

    def __init__(
        self,
        kind: str,
        *,
        plural: str | None = None,
        unknown_error: type[UnknownNameError] = UnknownNameError,
        duplicate_error: type[DuplicateNameError] = DuplicateNameError,
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.unknown_error = unknown_error
        self.duplicate_error = duplicate_error
        self._entries: dict[Hashable, T] = {}
        self._sources: dict[Hashable, str] = {}
        self._lock = threading.RLock()
        _INSTANCES.add(self)

    # -- snapshots (a plugin that fails to load leaves nothing behind) -----------------
    def snapshot(self) -> tuple[dict[Hashable, T], dict[Hashable, str]]:
        with self._lock:
            return dict(self._entries), dict(self._sources)

    def restore(self, snapshot: tuple[dict[Hashable, T], dict[Hashable, str]]) -> None:
        with self._lock:
            self._entries.clear()
            self._entries.update(snapshot[0])
            self._sources.clear()
            self._sources.update(snapshot[1])

    # -- naming ------------------------------------------------------------------------
    def label(self, key: Hashable) -> str:
        """How ``key`` is written in messages."""
        return repr(key)

    def source(self, key: Hashable) -> str:
        """Who registered ``key``."""
        return self._sources.get(key, BUILTIN_SOURCE)

    # -- registration ------------------------------------------------------------------
    def add(self, key: Hashable, entry: T, *, override: bool = False,
            source: str | None = None) -> T:
        """Register ``entry`` under ``key``; a taken key needs ``override=True``."""
        source = source or getattr(entry, "source", None) or current_source() or source_of(entry)
        with self._lock:
            if key in self._entries and not override:
                raise self.duplicate_error(
                    f"{self.kind} {self.label(key)} is already registered by "
                    f"{self.source(key)}; {source} tried to register it again "
                    "(pass override=True to replace it on purpose)"
                )
            self._entries[key] = entry
            self._sources[key] = source
        return entry

    def register(self, key: Hashable, *, override: bool = False,
                 make: Callable[[F], T] | None = None) -> Callable[[F], F]:
        """Decorator registering the decorated object (or ``make(obj)``) under ``key``."""

        def decorator(obj: F) -> F:
            entry = make(obj) if make is not None else obj
            self.add(key, entry, override=override,  # type: ignore[arg-type]
                     source=getattr(entry, "source", None) or current_source() or source_of(obj))
            return obj

        return decorator

    def remove(self, key: Hashable) -> None:
        """Forget ``key`` (nothing happens if it is not registered)."""
        with self._lock:
            self._entries.pop(key, None)
            self._sources.pop(key, None)

    # -- lookup ------------------------------------------------------------------------
    def get(self, key: Hashable) -> T:
        """The entry of ``key``; :attr:`unknown_error` names the closest known one."""
        try:
            return self._entries[key]
        except KeyError:
            raise self.unknown_error(self.unknown_message(key)) from None

    def unknown_message(self, key: Hashable) -> str:
        known = [str(k) for k in self.names()]
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"unknown {self.kind} {self.label(key)}{hint}; known {self.plural}: "
                f"{', '.join(sorted(known)) or 'none'}")

    def names(self) -> list[Hashable]:
        """Registered keys, in registration order."""
        return list(self._entries)

    def list(self) -> list[T]:
        """Registered entries, in registration order."""
        return list(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


_INSTANCES: weakref.WeakSet[Registry[Any]] = weakref.WeakSet()


def all_registries() -> list[Registry[Any]]:
    """Every registry alive in this process (the plugin loader snapshots them)."""
    return list(_INSTANCES)
