"""``nasspeech predict MODEL AUDIO...``."""

from __future__ import annotations

import argparse
import json

NAME = "predict"
HELP = ("class probabilities of audio files from an exported model (ONNX, TorchScript) or a "
        "train run directory")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="model.onnx / model.torchscript.pt from `nasspeech export` (its .json "
                        "contract beside it), or a `nasspeech train` run directory")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files (wav, flac, ...)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object a file")


def format_table(class_names: list[str], rows: list) -> str:
    """One line per file: its path, a probability per class, and the predicted class."""
    header = ["file", *class_names, "predicted"]
    body = [[r.path, *(f"{p:.3f}" for p in r.probabilities), r.predicted]
            for r in rows if r.probabilities is not None]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, len(header) - 1) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *body]]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    from nasspeech.cli.main import CLIError
    from nasspeech.export import ExportError, open_model, predict_files
    from nasspeech.extras import MissingExtraError

    try:
        model = open_model(args.model)
        results = predict_files(model, args.audio)
    except (ExportError, MissingExtraError) as exc:
        raise CLIError(str(exc)) from None
    names = model.class_names
    if args.json:
        print(json.dumps([
            {"file": r.path, "error": r.error} if r.probabilities is None else
            {"file": r.path, "probabilities": dict(zip(names, r.probabilities)),
             "predicted": r.predicted}
            for r in results], indent=2))
    elif any(r.probabilities is not None for r in results):
        print(format_table(names, results))
    failed = [r for r in results if r.error is not None]
    if failed:
        raise CLIError(f"{len(failed)} of {len(results)} files gave no prediction:\n" +
                       "\n".join(f"  {r.path}: {r.error}" for r in failed))
    return 0
