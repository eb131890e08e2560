"""``nasspeech params CONFIG [--genotype FILE]``: count the parameters of a model.

With a genotype, the derived model that ``nasspeech train`` would build (a run config's
``train.overrides`` applied, then ``--override``); without one, the supernet (its weights,
with the alphas listed apart). Models are built on the meta device: counting allocates no
memory, so large models count in a moment.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasspeech.cli.main import CLIError

NAME = "params"
HELP = "count the parameters of a config's derived model (with --genotype) or its supernet"

#: How nasspeech counts, printed with the numbers.
CONVENTION = {
    "derived": "learnable parameters; as in the DARTS code, pooling ops in derived cells have "
               "no BatchNorm (pt.darts adds an affine one: 2 x width more per pooling edge)",
    "supernet": "learnable weights, the alphas apart; as in DARTS, the BatchNorms of candidate "
                "ops have no affine parameters during the search (search_bn_affine: false)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML/JSON) or a bare space file")
    p.add_argument("--genotype", help="genotype JSON: count its derived model "
                                      "(default: count the supernet)")
    p.add_argument("--override", action="append", default=[], metavar="COMPONENT.FIELD=N",
                   help="change a component's channels or cells in the derived model, e.g. "
                        "cnn.channels=36 (repeatable; after the config's train.overrides)")
    p.add_argument("--auxiliary", action="store_true",
                   help="add DARTS's auxiliary head (at 2/3 depth of the cnn component) to the "
                        "derived model and count it separately")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def parse_override(text: str) -> tuple[str, str, int]:
    """``"cnn.channels=36"`` -> ``("cnn", "channels", 36)``."""
    target, sep, value = text.partition("=")
    component, dot, key = target.strip().rpartition(".")
    if not (sep and dot and component and key):
        raise CLIError(f"--override expects COMPONENT.FIELD=N, e.g. cnn.channels=36; got {text!r}")
    try:
        return component, key, int(value.strip())
    except ValueError:
        raise CLIError(f"--override {text!r}: {value.strip()!r} is not an integer") from None


def load(path: str) -> tuple[Any, dict[str, dict[str, int]]]:
    """The space of ``path`` (a run config or a bare space) and the config's overrides."""
    from pydantic import ValidationError

    from nasspeech.config import ConfigError, RunConfig
    from nasspeech.space.config import SearchSpace, load_mapping
    from nasspeech.space.loading import format_errors

    try:
        data = load_mapping(path)
        if "components" in data:
            return SearchSpace.model_validate(data), {}
        config = RunConfig.from_mapping(data, origin=path)
        return config.space, {k: dict(v) for k, v in config.train.overrides.items()}
    except ValidationError as exc:
        raise CLIError(f"{path} does not validate:\n{format_errors(exc)}") from None
    except (OSError, ConfigError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def measure(space: Any, genotype: Any, overrides: dict[str, dict[str, int]],
            auxiliary: bool) -> dict[str, Any]:
    """Parameters per part of the model; built on the meta device."""
    import torch

    with torch.device("meta"):
        if genotype is None:
            model = space.build_supernet()
        else:
            model = space.derive(genotype, overrides=overrides, auxiliary=auxiliary)
    parts = {name: count(comp) + count(model.handovers[name])
             for name, comp in model.components.items()}
    parts["classifier"] = count(model.classifier)
    result: dict[str, Any] = {"space": space.name, "model": "supernet" if genotype is None
                              else "derived", "parts": parts, "total": sum(parts.values())}
    if genotype is None:
        alphas = sum(a.numel() for a in model.alpha_parameters())
        parts = {n: (v - sum(a.numel() for a in model.components[n].arch_parameters())
                     if n in model.components else v) for n, v in parts.items()}
        result.update(parts=parts, total=sum(parts.values()), alphas=alphas)
    else:
        result["overrides"] = overrides
        result["auxiliary"] = count(model.auxiliary) if model.auxiliary is not None else None
    result["convention"] = CONVENTION[result["model"]]
    return result


def render(result: dict[str, Any], source: str) -> str:
    what = ("supernet" if result["model"] == "supernet"
            else f"derived model of {source}")
    changes = ", ".join(f"{c}: " + ", ".join(f"{k} {v}" for k, v in o.items())
                        for c, o in result.get("overrides", {}).items())
    lines = [f"{result['space']}: {what}" + (f" ({changes})" if changes else "")]
    rows = list(result["parts"].items()) + [("total", result["total"])]
    if result.get("alphas") is not None:
        rows.append(("alphas", result["alphas"]))
    if result.get("auxiliary") is not None:
        rows += [("auxiliary head", result["auxiliary"]),
                 ("total with auxiliary", result["total"] + result["auxiliary"])]
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name.ljust(width)}  {n:>12,}" for name, n in rows]
    lines.append(f"({result['convention']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from nasspeech.genotype import Genotype, GenotypeError
    from nasspeech.space.derived import check_fits

    space, overrides = load(args.config)
    for text in args.override:
        component, key, value = parse_override(text)
        overrides.setdefault(component, {})[key] = value
    if args.genotype is None and (overrides and args.override or args.auxiliary):
        raise CLIError("--override and --auxiliary change the derived model: give --genotype")
    genotype = None
    try:
        if args.genotype is not None:
            genotype = Genotype.load(args.genotype)
            check_fits(space, genotype)
        result = measure(space, genotype, overrides if genotype is not None else {},
                         args.auxiliary)
    except GenotypeError as exc:
        raise CLIError(str(exc)) from None
    except KeyError as exc:  # overrides naming an unknown component or field
        raise CLIError(str(exc.args[0])) from None
    except ValueError as exc:  # bad override values, a model too large
        raise CLIError(str(exc)) from None
    print(json.dumps(result, indent=2) if args.json else render(result, Path(
        args.genotype or "").name or "the supernet"))
    return 0
