"""``nasspeech demo-data DIR``: write the embedded SYNTHETIC emotional-speech corpus."""

from __future__ import annotations

import argparse

NAME = "demo-data"
HELP = "write the synthetic demo corpus (wavs + manifest.csv) to a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write into (reused if already complete)")
    parser.add_argument("--speakers", type=int, default=8, help="synthetic speakers (default 8)")
    parser.add_argument("--clips-per-emotion", type=int, default=8,
                        help="clips per speaker and emotion (default 8)")
    parser.add_argument("--duration", type=float, default=2.0, help="clip length in s (2.0)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, identical files")


def run(args: argparse.Namespace) -> int:
    from nasspeech.cli.main import CLIError
    from nasspeech.data import generate_demo_corpus

    for name in ("speakers", "clips_per_emotion", "sample_rate"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0:
        raise CLIError("--duration must be positive")
    manifest = generate_demo_corpus(args.out_dir, args.speakers, args.clips_per_emotion,
                                    args.duration, args.sample_rate, args.seed, progress=True)
    n = args.speakers * 4 * args.clips_per_emotion
    print(f"{n} SYNTHETIC clips (not real speech) in {manifest.parent}; manifest: {manifest}")
    return 0
