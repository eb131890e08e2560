"""``nasspeech demo``: the whole pipeline on the embedded synthetic corpus, in minutes on a CPU.

Generates the synthetic corpus (once, into the cache), runs a small joint CNN + seq search on
each speaker-independent fold (4 by default), retrains the found architecture, tests it on the fold's held-out
synthetic speakers and compares it with the CNN+LSTM-attention baseline.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from nasspeech.config import RunConfig
from nasspeech.workflow.cv import CVResult, run_cv
from nasspeech.workflow.datasets import load_run_data

DEMO_CONFIG = "demo.yaml"


def demo_config() -> RunConfig:
    """The packaged demo config (also at examples/demo.yaml)."""
    with resources.as_file(resources.files("nasspeech.resources") / DEMO_CONFIG) as path:
        return RunConfig.load(path)


def fresh_dir(base: str | Path) -> Path:
    """``base``, or ``base-2``, ``base-3``... : the demo never reuses a run directory."""
    base = Path(base)
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def run_demo(out_dir: str | Path = "runs/demo", folds: list[int] | None = None,
             progress: bool = True, resume: bool = False, restart: bool = False,
             threads: int | None = None, tensorboard: bool = False) -> CVResult:
    """The demo cv into a fresh directory beside ``out_dir`` (or into ``out_dir`` itself with
    ``resume``/``restart``); prints the tables and where the plots are."""
    t0 = time.perf_counter()
    config = demo_config()
    if threads is not None:
        config = config.model_copy(update={"threads": threads})
    if tensorboard:  # every fold's search, retrain and baseline in one TensorBoard
        from nasspeech.observe import with_tensorboard

        config = with_tensorboard(config)
    out = Path(out_dir) if resume or restart else fresh_dir(out_dir)
    data = load_run_data(config, progress=progress)
    result = run_cv(config, data, out, folds=folds, baselines=("cnn_lstm_att",),
                    progress=False, resume=resume, restart=restart)
    minutes = (time.perf_counter() - t0) / 60
    lines = [
        "", "nasspeech demo — synthetic corpus (generated speech-like signals, not real speech)",
        result.markdown,
        f"run directory: {out}",
    ]
    first = min(out.glob("fold_*"))
    for png in sorted(first.glob("*/*.png")):
        lines.append(f"  plot: {png}")
    lines.append(f"  (the same plots for every fold under {out}/fold_*/; tables: "
                 f"{out / 'results.md'}, {out / 'results.json'})")
    if tensorboard:
        lines.append(f"  TensorBoard: tensorboard --logdir {out}")
    lines.append(f"done in {minutes:.1f} min")
    print("\n".join(lines))
    return result
