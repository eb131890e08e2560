"""``nasspeech export RUN_DIR|MODEL_FILE --format onnx|torchscript``."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = ("export a retrained model to ONNX or TorchScript, with its input contract as JSON "
        "beside it")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nasspeech.export.formats import FORMATS

    p.add_argument("model", metavar="RUN_DIR|MODEL_FILE",
                   help="a `nasspeech train` run directory, or its model.pt")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default RUN_DIR/model.onnx or model.torchscript.pt); "
                        "the contract goes to FILE.json")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="accept any batch size (default: batches of --batch clips)")
    p.add_argument("--batch", type=int, default=None,
                   help="the fixed batch size (default 1; not with --dynamic-batch)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from nasspeech.cli.main import CLIError
    from nasspeech.export import ExportError, export_model
    from nasspeech.extras import MissingExtraError

    if args.dynamic_batch and args.batch is not None:
        raise CLIError("--batch fixes the batch size and --dynamic-batch accepts any: give one")
    try:
        res = export_model(args.model, args.format, args.out, dynamic_batch=args.dynamic_batch,
                           batch=1 if args.batch is None else args.batch,
                           overwrite=args.force)
    except (ExportError, MissingExtraError) as exc:
        raise CLIError(str(exc)) from None
    c, v = res.contract, res.contract["verified"]
    sizes = ", ".join(map(str, v["batch_sizes"]))
    batch = "any batch size" if c["input"]["batch"] == "any" else f"batches of {c['input']['batch']}"
    print(f"exported the {c['model']['name']!r} model: {res.path} ({batch}; input "
          f"{c['input']['name']} {c['input']['shape'][1:]}, outputs logits and probabilities "
          f"over {c['class_names']})")
    print(f"contract: {res.contract_path}")
    print(f"checked with {v['checked_with']} against PyTorch at batch size {sizes}: "
          f"max |diff| {v['max_abs_diff']:.2g}")
    return 0
