"""docs/config.md, generated from the pydantic models of the run config.

``python -m nasspeech.workflow.config_reference > docs/config.md`` rewrites the page; a test
checks that the checked-in page equals :func:`render`, so the reference cannot drift.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

INTRO = """\
# Run config reference

<!-- Generated from the pydantic models by `python -m nasspeech.workflow.config_reference >
docs/config.md`; do not edit by hand (a test compares it with the models). -->

One YAML (or JSON) file describes a run: the search space, the search, the retraining and the
data. Unknown keys are errors, every number must be finite (`.inf`/`.nan` are refused), and an
error names the field (`search.lr`). Relative paths written in the file (`data.root`,
`data.manifest`, `data.fold_file`, `data.cache_dir`, `data.demo.out_dir`, `imports`) are
relative to **the config file's folder**; paths left to their defaults are relative to the
current directory. `space.input_shape` must be `[1, data.features.n_mfcc,
data.features.frames]`. How runs use these settings (resume, threads, run directories) is in
[runs.md](runs.md); the space is described in [compose.md](compose.md), the data in
[data.md](data.md).

Constraints: `≥`/`>`/`≤`/`<` bound a number, `items ≥ n` a list's length.
"""


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is tuple:
        return f"[{', '.join(_type(a) for a in args)}]" if ... not in args else \
            f"list of {_type(args[0])}"
    if origin is dict:
        return f"mapping {_type(args[0])} → {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is Any:
        return "any"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section)"
    else:
        value = field.default
    return f"`{json.dumps(value, default=str)}`"


def _constraints(field: FieldInfo) -> str:
    signs = {Ge: ("≥", "ge"), Gt: (">", "gt"), Le: ("≤", "le"), Lt: ("<", "lt"),
             MinLen: ("items ≥", "min_length"), MaxLen: ("items ≤", "max_length")}
    parts = []
    for meta in field.metadata:
        for kind, (sign, attr) in signs.items():
            if isinstance(meta, kind):
                parts.append(f"{sign} {getattr(meta, attr)}")
    return ", ".join(parts)


def _nested(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested(arg)
        if found is not None:
            return found
    return None


def sections(model: type[BaseModel], path: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(dotted path, model) of ``model`` and every section nested in it, depth first."""
    out = [(path, model)]
    for name, field in model.model_fields.items():
        nested = _nested(field.annotation)
        if nested is not None:
            is_list = typing.get_origin(field.annotation) is list
            sub = f"{path}.{name}" if path else name
            out += sections(nested, sub + ("[]" if is_list else ""))
    return out


#: Descriptions (with units) of fields whose model has none.
NOTES = {
    "space.name": "name of the space (recorded in genotypes)",
    "space.num_classes": "output classes",
    "space.components": "the components, in order (e.g. a cnn, then a seq)",
    "space.classifier": "the head after the last component",
    "space.components[].name": "unique name, used in genotypes and train.overrides",
    "space.components[].family": "op family: cnn or seq (or a registered one)",
    "space.components[].ops": "candidate op names (`nasspeech ops` lists them)",
    "space.components[].cells": "cells in the stack",
    "space.components[].nodes": "intermediate nodes per cell",
    "space.components[].handover": "how the output becomes the next stage's input "
                                   "(a name, or a mapping with options)",
    "space.components[].handover.name": "registered hand-over; auto: the default for the input's rank and the next family",
    "space.components[].handover.options": "keyword options of the hand-over",
    "space.classifier.hidden": "widths of hidden layers of the head",
    "space.classifier.dropout": "dropout before the last layer of the head",
    "data.corpus": "corpus loader (docs/data.md)",
    "data.root": "corpus root folder (path)",
    "data.manifest": "manifest CSV (path; corpus manifest)",
    "data.speaker_regex": "folder corpus: regex whose first group is the speaker",
    "data.label_map": "corpus label -> class name",
    "data.on_unknown_label": "a label outside the classes: raise or skip the clip",
    "data.on_missing_file": "a listed audio file that is missing: raise or skip it",
    "data.folds": "speaker-independent folds",
    "data.group_by": "what a fold holds out (null: the corpus default)",
    "data.search_fraction": "share of a fold's non-test clips used for the search; the rest "
                            "is the training split",
    "data.seed": "seeds the fold assignment",
    "data.fold_file": "JSON {group: fold} fixing the folds (path)",
    "data.features": "feature extraction",
    "data.cache_dir": "feature cache and demo corpus folder (path)",
    "data.workers": "feature extraction processes",
    "data.demo": "the synthetic demo corpus",
    "data.features.sample_rate": "Hz",
    "data.features.duration": "seconds of audio per clip (padded / cut)",
    "data.features.n_mfcc": "MFCCs (or log-mel bands): the feature height",
    "data.features.frames": "frames after max-pooling over time: the feature width",
    "data.features.n_fft": "FFT size, samples",
    "data.features.hop_length": "hop, samples",
    "data.features.kind": "mfcc or logmel",
    "data.features.normalise": "per_clip: zero mean, unit std per clip",
    "data.features.on_error": "a clip that fails to load: skip (reported) or raise",
    "data.demo.n_speakers": "synthetic speakers",
    "data.demo.clips_per_emotion": "clips per speaker and emotion",
    "data.demo.duration": "seconds per clip",
    "data.demo.sample_rate": "Hz",
    "data.demo.seed": "seeds the synthetic signals",
}


def _cell(text: str) -> str:
    return " ".join(text.replace("``", "`").split()).replace("|", "\\|")


def render_section(path: str, model: type[BaseModel]) -> str:
    doc = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0]
    title = f"`{path}`" if path else "top level"
    lines = [f"## {title}", ""]
    if doc and not doc.startswith("Usage docs"):
        lines += [" ".join(doc.replace("``", "`").split()), ""]
    lines += ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    prefix = f"{path}." if path else ""
    for name, field in model.model_fields.items():
        lines.append(f"| `{prefix}{name}` | {_cell(_type(field.annotation))} | "
                     f"{_cell(_default(field))} | {_constraints(field)} | "
                     f"{_cell(field.description or NOTES.get(prefix + name, ''))} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole page."""
    from nasspeech.config import RunConfig

    return "\n".join([INTRO, *(render_section(p, m) for p, m in sections(RunConfig))])


if __name__ == "__main__":
    print(render(), end="")
