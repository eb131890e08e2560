"""``nasspeech demo-data DIR``: write the embedded SYNTHETIC emotional-speech corpus."""

from __future__ import annotations

import argparse

NAME = "demo-data"
HELP = "write the synthetic demo corpus (wavs + manifest.csv) to a folder"

#: DemoCorpusConfig field -> its command-line flag.
FLAGS = {"n_speakers": "--speakers", "clips_per_emotion": "--clips-per-emotion",
         "duration": "--duration", "sample_rate": "--sample-rate", "seed": "--seed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="a new or empty folder, or one holding a demo corpus "
                        "(reused if complete, regenerated otherwise)")
    parser.add_argument("--speakers", type=int, default=8, help="synthetic speakers (default 8)")
    parser.add_argument("--clips-per-emotion", type=int, default=8,
                        help="clips per speaker and emotion (default 8)")
    parser.add_argument("--duration", type=float, default=2.0, help="clip length in s (2.0)")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="Hz, 8000-192000 (default 16000)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, identical files")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from nasspeech.cli.main import CLIError
    from nasspeech.data import CorpusError, DemoCorpusConfig, generate_demo_corpus

    try:
        config = DemoCorpusConfig(n_speakers=args.speakers,
                                  clips_per_emotion=args.clips_per_emotion,
                                  duration=args.duration, sample_rate=args.sample_rate,
                                  seed=args.seed)
    except ValidationError as exc:
        raise CLIError("; ".join(f"{FLAGS.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']} "
                                 f"(got {e['input']!r})" for e in exc.errors())) from None
    try:
        manifest = generate_demo_corpus(args.out_dir, config.n_speakers, config.clips_per_emotion,
                                        config.duration, config.sample_rate, config.seed,
                                        progress=True)
    except CorpusError as exc:
        raise CLIError(str(exc)) from None
    n = config.n_speakers * 4 * config.clips_per_emotion
    print(f"{n} SYNTHETIC clips (not real speech) in {manifest.parent}; manifest: {manifest}")
    return 0
