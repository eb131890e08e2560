"""Reading config files: the one loader every YAML/JSON config of nasspeech goes through.

Besides parsing, it refuses what a parser would otherwise accept silently or expand without
bound: a key given twice in one mapping (YAML and JSON parsers keep the last one), YAML
aliases that expand to a huge document (a "billion laughs": nine lines that expand to
gigabytes), nesting deeper than any config needs, and oversized files. Every error names the
file, is one line, and never prints the input beyond a short excerpt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nasspeech.space.limits import short

#: Values (scalars, lists and mappings) a config may expand to, aliases counted expanded.
MAX_VALUES = 100_000
MAX_DEPTH = 64
MAX_FILE_BYTES = 16 << 20


class ConfigFileError(ValueError):
    """A config file that cannot be read as a mapping."""


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int, first: int) -> None:
        lines = f"line {line}" if first == line else f"lines {first} and {line}"
        super().__init__(f"key {short(key)} appears twice in one mapping ({lines}); remove one")
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (``<<`` merges may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand to more than :data:`MAX_VALUES` values,
    that refers to itself, or that nests deeper than :data:`MAX_DEPTH`."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            active.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES:
                raise ConfigFileError(
                    f"aliases (*name) expand the document to more than {MAX_VALUES:,} values "
                    f"(at line {node.start_mark.line + 1}); a config is far smaller: write "
                    "it out instead of nesting aliases")
            if depth[key] > MAX_DEPTH:
                raise ConfigFileError(f"values nested more than {MAX_DEPTH} deep")
            continue
        if key in size:
            continue
        if key in active:
            raise ConfigFileError(
                f"an alias refers to the value that contains it (line "
                f"{node.start_mark.line + 1}): a recursive structure is not a config")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _load_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _load_json(text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in items:
            if key in data:
                lines = [text.count("\n", 0, m.start()) + 1
                         for m in re.finditer(rf'"{re.escape(key)}"\s*:', text)]
                where = f" (lines {lines[0]} and {lines[1]})" if len(lines) > 1 else ""
                raise ConfigFileError(f"key {short(key)} appears twice in one object{where}; "
                                      "remove one")
            data[key] = value
        return data

    def constant(name: str) -> float:
        raise ConfigFileError(f"{name} is not a number a config may hold")

    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)


def parse_mapping(text: str, origin: str, kind: str = "YAML") -> dict[str, Any]:
    """Parse ``text`` (``kind`` "YAML" or "JSON") into a dict; errors name ``origin``."""
    try:
        data = _load_json(text) if kind == "JSON" else _load_yaml(text)
    except (ConfigFileError, _DuplicateKey) as exc:
        raise ConfigFileError(f"{origin}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"{origin}, line {exc.lineno}, column {exc.colno}: not valid "
                              f"JSON: {exc.msg}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise ConfigFileError(f"{origin}{where}: not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{origin}: not valid {kind}: {short(str(exc))}") from None
    except RecursionError:
        raise ConfigFileError(f"{origin}: values nested too deeply") from None
    if data is None:
        raise ConfigFileError(f"{origin}: the file is empty; expected a mapping")
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def read_text(path: str | Path, what: str = "config file") -> str:
    """The UTF-8 text of ``path``, refusing missing, oversized and binary files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigFileError(f"{path}: {path.stat().st_size:,} bytes is too large for a "
                              f"{what} (the limit is {MAX_FILE_BYTES:,})")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or, for ``.json``, JSON) file into a dict; errors name the file."""
    path = Path(path)
    return parse_mapping(read_text(path), str(path), "JSON" if path.suffix == ".json" else "YAML")


def format_errors(exc: ValidationError) -> str:
    """One line per validation error, ``  field.path: message (got VALUE)``, the value cut short."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and err["type"] == "value_error":  # a whole-config check names its fields
            lines += [f"  {part}" for part in msg.split("; ")]
            continue
        got = ("" if err["type"] in ("missing", "value_error") or isinstance(err.get("input"), dict)
               else f" (got {short(err['input'])})")
        lines.append(f"  {loc or '(top level)'}: {msg}{got}")
    return "\n".join(lines)
