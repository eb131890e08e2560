"""``nasspeech features CONFIG | --manifest CSV``: load a corpus, pre-extract its features into
the cache (parallel, with a progress bar) and print what was kept, skipped and how it folds."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from nasspeech.cli.main import CLIError

NAME = "features"
HELP = "load a corpus, extract and cache its features, print the load/extraction/fold summaries"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("config", nargs="?", help="run config (YAML/JSON): its data: section is used")
    src.add_argument("--manifest", help="a CSV with path,label,speaker[,session] instead")
    parser.add_argument("--cache-dir", help="feature cache folder (default: the config's)")
    parser.add_argument("--workers", type=int, help="extraction processes (default: the config's)")
    parser.add_argument("--duration", type=float, help="override data.features.duration (s)")
    parser.add_argument("--n-mfcc", type=int, help="override data.features.n_mfcc")
    parser.add_argument("--frames", type=int, help="override data.features.frames")
    parser.add_argument("--kind", choices=("mfcc", "logmel"), help="override data.features.kind")
    parser.add_argument("--folds", type=int, help="override data.folds (default 5)")
    parser.add_argument("--group-by", choices=("speaker", "session"), help="override data.group_by")
    parser.add_argument("--balance-gender", action="store_true",
                        help="every test fold holds both genders (sets data.balance_gender)")
    parser.add_argument("--folds-out", type=Path,
                        help="also write the folds (indices and summaries) to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def data_config(args: argparse.Namespace) -> Any:
    """The :class:`DataConfig` of the command line (config file or manifest plus overrides)."""
    from pydantic import ValidationError

    from nasspeech.config import format_errors
    from nasspeech.data import DataConfig
    from nasspeech.space.loading import ConfigFileError, load_mapping

    if args.manifest:
        raw: dict[str, Any] = {"corpus": "manifest", "manifest": args.manifest}
    else:
        try:
            loaded = load_mapping(args.config)
        except ConfigFileError as exc:
            raise CLIError(str(exc)) from None
        if "data" in loaded:  # a run config
            raw = dict(loaded["data"] or {})
        elif {"space", "search", "train"} & set(loaded):  # a run config on the default data
            raw = {}
        else:  # a bare data section
            raw = dict(loaded)
    features = dict(raw.get("features") or {})
    for field in ("duration", "n_mfcc", "frames", "kind"):
        if getattr(args, field) is not None:
            features[field] = getattr(args, field)
    raw["features"] = features
    if args.cache_dir:
        raw["cache_dir"] = args.cache_dir
    if args.workers:
        raw["workers"] = args.workers
    if args.folds:
        raw["folds"] = args.folds
    if args.group_by:
        raw["group_by"] = args.group_by
    if args.balance_gender:
        raw["balance_gender"] = True
    try:
        return DataConfig.model_validate(raw)
    except ValidationError as exc:
        where = args.manifest or args.config
        lines = [f"  data.{line.strip()}" for line in format_errors(exc).splitlines()]
        raise CLIError(f"{where}: the data section does not validate:\n" + "\n".join(lines)
                       ) from None


def run(args: argparse.Namespace) -> int:
    from nasspeech.data import (
        CorpusError,
        CorpusWarning,
        FeatureError,
        FoldError,
        extract_features,
        folds_for,
        load_corpus,
        save_folds,
    )

    config = data_config(args)
    progress = not args.quiet
    try:
        with warnings.catch_warnings():  # the report printed below carries them
            warnings.simplefilter("ignore", CorpusWarning)
            items, load_report = load_corpus(config)
        print(load_report, flush=True)
        x, report = extract_features(items, config.features, config.cache_dir, config.workers,
                                     progress=progress)
        if not progress:
            print(report)
        kept = [items[i] for i in report.kept]
        rate = len(items) / report.seconds if report.seconds else 0.0
        print(f"features: {tuple(x.shape)} float32, cache {Path(config.cache_dir).resolve()} "
              f"({rate:.0f} clips/s)")
        folds = folds_for(kept, config)
    except (CorpusError, FeatureError, FoldError) as exc:
        raise CLIError(str(exc)) from None
    for fold in folds:
        print(fold.summary_text())
    if args.folds_out:
        print(f"folds written to {save_folds(folds, args.folds_out)}")
    return 0
