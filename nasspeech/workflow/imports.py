"""User modules imported before a command runs (``--import MODULE``, a run config's
``imports:``), so that the ops, hand-overs and baselines they register are visible.

A name is either a dotted module name, imported with ``base`` (the current directory for
``--import``, the config's folder for ``imports:``) put first on ``sys.path`` while it is
imported, or a path to a ``.py`` file (relative to ``base``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType


class ModuleImportError(ImportError):
    """A user module that cannot be found or fails while it is imported."""


#: (name, base, origin) of each module :func:`import_modules` imported in this process.
_IMPORTED: list[tuple[str, str, str]] = []


def imported_modules() -> list[tuple[str, str, str]]:
    """What :func:`import_modules` imported in this process, in order, as (name, base folder,
    origin): another process (a Ray worker) imports the same with
    ``import_modules([name], base, origin)``."""
    return list(_IMPORTED)


@contextlib.contextmanager
def _first_on_path(base: Path) -> Iterator[None]:
    entry = str(base)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _is_file(name: str) -> bool:
    return name.endswith(".py") or "/" in name or os.sep in name


def _import_file(path: Path, origin: str) -> ModuleType:
    if not path.is_file():
        raise ModuleImportError(f"{origin}: module file not found: {path}")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
            return loaded
        raise ModuleImportError(f"{origin}: {path}: a module named {name!r} is already "
                                f"imported (from {getattr(loaded, '__file__', 'built-in')}); "
                                "rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_modules(names: Sequence[str], base: str | Path | None = None,
                   origin: str = "--import") -> list[ModuleType]:
    """Import ``names`` in order; :class:`ModuleImportError` names the module and ``origin``."""
    base = Path(base or os.getcwd()).resolve()
    modules = []
    for name in names:
        try:
            if _is_file(name):
                path = Path(os.path.abspath(base / os.path.expanduser(name)))
                modules.append(_import_file(path, origin))
            else:
                with _first_on_path(base):
                    modules.append(importlib.import_module(name))
            if (name, str(base), origin) not in _IMPORTED:
                _IMPORTED.append((name, str(base), origin))
        except ModuleImportError:
            raise
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise ModuleImportError(f"{origin}: no module named {name!r} (looked in {base} "
                                        "and on the Python path)") from None
            raise ModuleImportError(f"{origin}: importing {name!r} failed: "
                                    f"{_one_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - the user's module failed: say so in one line
            raise ModuleImportError(f"{origin}: importing {name!r} failed: "
                                    f"{_one_line(exc)}") from None
    return modules
