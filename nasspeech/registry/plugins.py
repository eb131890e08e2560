"""Discovery of plugins through the ``nasspeech.ops`` entry-point group.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."nasspeech.ops"]
    my_ops = "my_package.ops"          # a module whose import registers ops (and families)

The target may also be a callable, which is called with no arguments. Every op a plugin
registers is smoke-tested (built and run on tiny inputs); an op that fails is dropped
with a :class:`PluginWarning`, so is an op whose name is taken already (the plugin's other
ops stay), and a plugin that fails to import (even by calling ``sys.exit()``) is skipped
with one, so one broken plugin never breaks the others.
"""

from __future__ import annotations

import os
import types
from importlib import metadata
from typing import Any

from nasspeech.registry.base import all_registries
from nasspeech.registry.context import PluginSession, loading_plugin, registering_as
from nasspeech.registry.notices import NasspeechWarning, warn_once
from nasspeech.registry.operation import DuplicateOpError, Operation
from nasspeech.registry.validation import check_op

#: An :class:`~nasspeech.registry.registry.OpRegistry` (which imports this module).
OpRegistry = Any

ENTRY_POINT_GROUP = "nasspeech.ops"
DISABLE_ENV = "NASSPEECH_NO_PLUGINS"

_autoload_override: bool | None = None


class PluginWarning(NasspeechWarning):
    """A plugin could not be loaded, or one of its ops was rejected."""


def set_plugin_autoload(enabled: bool) -> None:
    """Turn entry-point plugin autoloading on or off (takes effect before first registry use).

    The environment variable ``NASSPEECH_NO_PLUGINS=1`` turns it off too.
    """
    global _autoload_override
    _autoload_override = enabled


def autoload_enabled() -> bool:
    if _autoload_override is not None:
        return _autoload_override
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


def _distribution_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "unknown-distribution"


#: Ops each entry point registered when it was first loaded in this process, so that loading
#: it into another registry re-adds them (an imported module does not run a second time).
_first_load: dict[tuple[str, str], list[Operation]] = {}


def load_plugins(registry: OpRegistry) -> list[str]:
    """Load every ``nasspeech.ops`` entry point into ``registry``; returns the loaded sources.

    Whatever a plugin does wrong is reported as one :class:`PluginWarning` per problem (once
    per process) and remembered by the registry, whose unknown-op errors then name it.
    """
    loaded: list[str] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = _distribution_name(ep)
        where = f"plugin {dist!r} (entry point {ep.name} = {ep.value})"
        before = dict(registry._ops)
        others = {r: r.snapshot() for r in all_registries() if r is not registry
                  and not hasattr(r, "_rejected")}  # families, hand-overs, baselines...
        session = PluginSession()
        try:
            with registering_as(dist, registry), loading_plugin(session):
                if (dist, ep.value) in _first_load:
                    for op in _first_load[(dist, ep.value)]:
                        try:
                            registry.add(op)
                        except DuplicateOpError:
                            session.duplicates.append((op, registry._ops[(op.family, op.name)]))
                else:
                    target = ep.load()
                    if callable(target) and not isinstance(target, types.ModuleType):
                        target()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001  (not even sys.exit() may break the others)
            reason = _describe_failure(exc)
            registry.note_failed_plugin(f"plugin {dist!r}", reason)
            warn_once(f"{where} failed to load and was skipped: {reason}", PluginWarning)
            _restore(registry, before)
            for other, snapshot in others.items():
                other.restore(snapshot)
            continue
        new_ops = [op for key, op in registry._ops.items() if before.get(key) is not op]
        _first_load.setdefault((dist, ep.value), new_ops + [op for op, _ in session.duplicates])
        for op, existing in session.duplicates:
            why = (f"{where} registers it again; it stays {existing.source}'s "
                   "(the plugin's other ops are kept; override=True replaces an op on purpose)")
            registry.note_rejected(op, why)
            warn_once(f"{where}: op {op.key} was not registered: {existing.source} "
                      "already registers it (the plugin's other ops are kept)", PluginWarning)
        for op in new_ops:
            problem = check_op(op)
            if problem:
                registry.remove(op.family, op.name)
                if (op.family, op.name) in before:  # it had overridden an op: put that back
                    registry.add(before[(op.family, op.name)])
                else:
                    registry.note_rejected(op, f"{where} registers it, but it was rejected: "
                                               f"{problem}")
                warn_once(f"{where}: op {op.key} was rejected: {problem}", PluginWarning)
        loaded.append(dist)
    return loaded


def _describe_failure(exc: BaseException) -> str:
    """One line: the exception type and the first line of its message."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while loading"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "(no message)"
    return f"{type(exc).__name__}: {first}"


def _restore(registry: OpRegistry, before: dict[tuple[str, str], Operation]) -> None:
    """Undo what a failed plugin registered or overrode."""
    for key in list(registry._ops):
        if key not in before:
            registry.remove(*key)
    for op in before.values():
        registry.add(op, override=True)

