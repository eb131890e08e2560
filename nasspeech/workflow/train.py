"""``nasspeech train``: retrain a searched genotype (or a baseline) on a fold's training set and
test it on the fold's held-out speakers (UA, WA, parameters, confusion matrix)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nasspeech.config import RunConfig
from nasspeech.genotype import Genotype
from nasspeech.observe import TensorBoardLog
from nasspeech.search import NonFiniteLossError, predict, weight_step
from nasspeech.workflow.artifacts import try_plot
from nasspeech.workflow.checkpoint import seed_everything
from nasspeech.workflow.datasets import BatchStream, RunData, eval_stream
from nasspeech.workflow.devices import autocast, resolve_device
from nasspeech.workflow.rundir import JsonlLog, WorkflowError, prepare_run_dir, write_json


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]


def build_model(config: RunConfig, genotype: Genotype | None, model: str) -> nn.Module:
    """The derived model of ``genotype`` (``model="searched"``) or a named baseline."""
    if model == "searched":
        if genotype is None:
            raise WorkflowError("training the searched model needs --genotype FILE")
        tc = config.train
        return config.space.derive(genotype, overrides=tc.overrides, drop_path=tc.drop_path)
    from nasspeech.baselines import build_baseline

    return build_baseline(model, tuple(config.space.input_shape), config.space.num_classes,
                          **config.train.baseline_options)


def run_train(
    config: RunConfig,
    data: RunData,
    fold: int,
    out_dir: str | Path,
    genotype: Genotype | None = None,
    model_name: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on ``fold``'s training part, then evaluate on every sample of its test part."""
    from nasspeech.metrics import classification_report, count_parameters
    from nasspeech.plots import plot_confusion, plot_training_curves

    tc = config.train
    name = model_name or tc.model
    split = data.fold(fold)
    run_dir = prepare_run_dir(out_dir)
    device = resolve_device(config.device)
    seed_everything(config.seed + fold)
    model = build_model(config, genotype, name).to(device)
    if genotype is not None and name == "searched":
        genotype.save(run_dir / "genotype.json")
    config.save(run_dir / "config.yaml")
    x, y = data.x.to(device), data.y.to(device)
    stream = BatchStream(x, y, split.train, tc.batch_size, True, config.seed, salt=100 + fold)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, tc.epochs, eta_min=tc.lr_min)
    log = JsonlLog(run_dir / "log.jsonl")
    tb = TensorBoardLog.open(config, run_dir)  # None unless log.tensorboard
    amp = autocast(device, config.amp)
    bar = tqdm(total=tc.epochs * len(stream), disable=not progress, unit="step",
               desc=f"train {name} fold {fold}", dynamic_ncols=True)
    try:
        for epoch in range(tc.epochs):
            t0 = time.perf_counter()
            model.train()
            loss = correct = count = 0.0
            for batch in stream.epoch(epoch):
                try:
                    with amp:
                        res = weight_step(model, opt, batch, tc.grad_clip)
                except NonFiniteLossError as exc:
                    raise WorkflowError(f"training stopped in epoch {epoch + 1}: {exc}") from None
                loss += res.loss * res.count
                correct, count = correct + res.correct, count + res.count
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{res.loss:.3f}")
            log.write({"epoch": epoch + 1, "lr": sched.get_last_lr()[0],
                       "train_loss": loss / count, "train_acc": correct / count,
                       "seconds": round(time.perf_counter() - t0, 3)})
            if tb is not None:
                tb.train_epoch(log.records()[-1])
            sched.step()
    finally:
        bar.close()
    with amp:
        pred, true = predict(model, eval_stream(x, y, split.test, tc.batch_size))
    report = classification_report(true, pred, data.class_names)
    metrics = {"model": name, "fold": fold, "ua": report["ua"], "wa": report["wa"],
               "params": count_parameters(model), "n_test": report["n"],
               "per_class_recall": report["per_class_recall"], "confusion": report["confusion"],
               "class_names": report["class_names"]}
    if metrics["n_test"] != len(split.test):
        raise WorkflowError(f"evaluated {metrics['n_test']} of {len(split.test)} test samples")
    write_json(run_dir / "metrics.json", metrics)
    if tb is not None:
        tb.train_result(metrics, tc.epochs)
        tb.close()
    torch.save(model.state_dict(), run_dir / "model.pt")
    try_plot("the confusion matrix", lambda: plot_confusion(
        report["confusion"], data.class_names, run_dir / "confusion.png",
        title=f"{name}, fold {fold}: UA {report['ua']:.1%}"), run_dir / "confusion.png")
    try_plot("the training curves", lambda: plot_training_curves(
        log.records(), run_dir / "curves.png"), run_dir / "curves.png")
    if progress:
        print(f"{name} fold {fold}: UA {metrics['ua']:.2%}  WA {metrics['wa']:.2%}  "
              f"params {metrics['params']:,}  ({metrics['n_test']} test clips)", file=sys.stderr)
    return TrainResult(run_dir, metrics)
