"""``nasspeech train``: retrain a searched genotype (or a baseline) on a fold's training data
(``train.data``) and test it on the fold's held-out speakers (UA, WA, parameters, confusion
matrix). Checkpointed every epoch, so an interrupted run resumes. With
``train.auxiliary_weight`` > 0 a searched model trains with DARTS's auxiliary head, which the
test, ``model.pt`` and the parameter count leave out."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nasspeech.config import RunConfig, auxiliary_error
from nasspeech.genotype import Genotype
from nasspeech.io import atomic_write, atomic_write_with
from nasspeech.kernels.precision import autocast
from nasspeech.kernels.recompute import recompute_depthwise
from nasspeech.observe import TensorBoardLog
from nasspeech.search import NonFiniteLossError, predict, weight_step
from nasspeech.workflow.artifacts import try_plot
from nasspeech.workflow.checkpoint import save_checkpoint, seed_everything, set_rng_state
from nasspeech.workflow.datasets import BatchStream, RunData, eval_stream, train_indices
from nasspeech.workflow.devices import cpu_memory_cache, resolve_device, use_threads
from nasspeech.workflow.resume import TRAIN_FIXED, resume_point
from nasspeech.workflow.rundir import (
    CHECKPOINT,
    JsonlLog,
    WorkflowError,
    open_run_dir,
    write_json,
)
from nasspeech.workflow.schedule import cosine_lr, set_hyper


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]


def check_model_name(name: str) -> None:
    """``searched`` or a registered baseline; a :class:`WorkflowError` naming the choices."""
    from nasspeech.baselines import list_baselines

    if name != "searched" and name not in list_baselines():
        raise WorkflowError(f"unknown model {name!r}: choose searched or a baseline "
                            f"({', '.join(list_baselines())})")


def build_model(config: RunConfig, genotype: Genotype | None, model: str,
                auxiliary: bool = False) -> nn.Module:
    """The derived model of ``genotype`` (``model="searched"``) or a named baseline;
    ``auxiliary``: with DARTS's auxiliary head (searched models only; a
    :class:`WorkflowError` naming ``train.auxiliary_weight`` where it has no place)."""
    check_model_name(model)
    if model == "searched":
        if genotype is None:
            raise WorkflowError("training the searched model needs a genotype "
                                "(genotype.json of a search)")
        tc = config.train
        derived = config.space.derive(genotype, overrides=tc.overrides, drop_path=tc.drop_path)
        if auxiliary:
            try:
                derived.attach_auxiliary()
            except ValueError as exc:
                raise WorkflowError(auxiliary_error(tc.auxiliary_weight, exc)) from None
        return derived
    if auxiliary:
        raise WorkflowError(auxiliary_error(
            config.train.auxiliary_weight, f"baseline {model!r} has no place for DARTS's auxiliary head "
            "(it follows a cell of a searched cnn component)"))
    from nasspeech.baselines import build_baseline

    try:
        return build_baseline(model, tuple(config.space.input_shape), config.space.num_classes,
                              **config.train.baseline_options)
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"train.baseline_options: {exc}") from None


def without_auxiliary(config: RunConfig) -> RunConfig:
    """``config`` with ``train.auxiliary_weight`` 0 (a copy): how ``cv`` trains baselines."""
    return config.model_copy(update={"train": config.train.model_copy(
        update={"auxiliary_weight": 0.0})})


def run_train(
    config: RunConfig,
    data: RunData,
    fold: int,
    out_dir: str | Path,
    genotype: Genotype | None = None,
    model_name: str | None = None,
    progress: bool = True,
    resume: bool = False,
    restart: bool = False,
) -> TrainResult:
    """Train on ``fold``'s training data, then evaluate on every sample of its test part.

    ``resume`` continues from the checkpoint in ``out_dir`` (a finished run is not trained
    again; a directory without a checkpoint starts again); ``restart`` deletes what it holds
    first. The run directory is locked while the run lasts."""
    name = model_name or config.train.model
    data.fold(fold)  # bad input fails before the run directory exists
    seed_everything(config.seed + fold)
    model = build_model(config, genotype, name, auxiliary=config.train.auxiliary_weight > 0)
    device = resolve_device(config.device)
    with open_run_dir(out_dir, resume, restart) as run_dir, \
            use_threads(config.threads) as threads, cpu_memory_cache(device), \
            recompute_depthwise(config.train.recompute_depthwise):
        return _train(config, data, fold, run_dir, model, genotype, name, progress, resume,
                      threads, device)


def _train(config: RunConfig, data: RunData, fold: int, run_dir: Path, model: nn.Module,
           genotype: Genotype | None, name: str, progress: bool, resume: bool,
           threads: dict[str, int], device: torch.device) -> TrainResult:
    tc = config.train
    split = data.fold(fold)
    model = model.to(device)
    x, y = data.x.to(device), data.y.to(device)
    indices = train_indices(split, tc.data)
    stream = BatchStream(x, y, indices, tc.batch_size, True, config.seed, salt=100 + fold)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    identity = {"model_name": name,
                "genotype": genotype.model_dump(mode="json") if genotype else None}
    start, changes = 0, {}
    ckpt = None
    if resume:
        ckpt, changes = resume_point(run_dir, "train", fold, config.model_dump(mode="json"),
                                     TRAIN_FIXED, device, same=identity)
    if ckpt is not None:
        _check_auxiliary(run_dir, model, ckpt["model"])
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_hyper(opt, momentum=tc.momentum, weight_decay=tc.weight_decay)  # the config's
        start = ckpt["epoch"]
        set_rng_state(ckpt["rng"])
    if start >= tc.epochs and (run_dir / "metrics.json").is_file():  # finished: not run again
        return TrainResult(run_dir, json.loads((run_dir / "metrics.json").read_text()))
    if genotype is not None and name == "searched":
        atomic_write(run_dir / "genotype.json", genotype.to_json())
    config.save(run_dir / "config.yaml")
    log = JsonlLog(run_dir / "log.jsonl", keep_epochs=start)
    tb = TensorBoardLog.open(config, run_dir, start)  # None unless log.tensorboard
    bar = tqdm(total=tc.epochs * len(stream), initial=min(start, tc.epochs) * len(stream),
               disable=not progress, unit="step", desc=f"train {name} fold {fold}",
               dynamic_ncols=True)
    try:
        for epoch in range(start, tc.epochs):
            t0 = time.perf_counter()
            lr = cosine_lr(epoch, tc.epochs, tc.lr, tc.lr_min)
            set_hyper(opt, lr=lr)
            drop = _drop_path(model, tc.drop_path * epoch / tc.epochs)
            model.train()
            loss = correct = count = aux_loss = 0.0
            for batch in stream.epoch(epoch):
                try:
                    res = weight_step(model, opt, batch, tc.grad_clip,
                                      aux_weight=tc.auxiliary_weight, precision=tc.precision)
                except NonFiniteLossError as exc:
                    raise WorkflowError(_nan_message(exc, epoch, run_dir)) from None
                loss += res.loss * res.count
                aux_loss += (res.aux_loss or 0.0) * res.count
                correct, count = correct + res.correct, count + res.count
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{res.loss:.3f}")
            log.write({"epoch": epoch + 1, "lr": lr, "train_loss": loss / count,
                       "train_acc": correct / count, **threads,
                       "seconds": round(time.perf_counter() - t0, 3),
                       **({"drop_path": drop} if tc.drop_path else {}),
                       **({"train_aux_loss": aux_loss / count} if tc.auxiliary_weight else {}),
                       **({"config_changes": changes} if changes else {})})
            changes = {}  # logged with the first epoch after the resume
            save_checkpoint(run_dir / CHECKPOINT, {
                "kind": "train", "epoch": epoch + 1, "fold": fold,
                "config": config.model_dump(mode="json"), **identity,
                "model": model.state_dict(), "optimizer": opt.state_dict()})
            if tb is not None:
                tb.train_epoch(log.records()[-1])
    finally:
        bar.close()
    return TrainResult(run_dir, _evaluate(config, data, split, run_dir, model, name, log,
                                          len(indices), progress, tb))


def _drop_path(model: nn.Module, prob: float) -> float:
    """DARTS's schedule: drop-path grows linearly from 0 (first epoch) towards
    ``train.drop_path``; models without drop-path (baselines) are left alone."""
    if hasattr(model, "set_drop_path"):
        model.set_drop_path(prob)
    return prob


def _check_auxiliary(run_dir: Path, model: nn.Module, state: dict[str, Any]) -> None:
    """The auxiliary head may not appear or vanish on a resume (its weight may change)."""
    had = any(k.startswith("auxiliary.") for k in state)
    if had != (getattr(model, "auxiliary", None) is not None):
        raise WorkflowError(
            f"cannot resume {run_dir}: it was started {'with' if had else 'without'} the "
            f"auxiliary head, and train.auxiliary_weight is now "
            f"{'0' if had else 'above 0'} (a changed non-zero weight is accepted); undo the "
            "change, or pass --restart to start over")


def _nan_message(exc: Exception, epoch: int, run_dir: Path) -> str:
    kept = (f"the checkpoint after epoch {epoch} is kept in {run_dir / CHECKPOINT}"
            if epoch else "no epoch finished, so there is no checkpoint yet")
    return (f"training stopped in epoch {epoch + 1}: {exc}. {kept}; lower train.lr or set "
            "train.grad_clip, then run again with --resume (changed optimisation settings "
            "are accepted)")


def _evaluate(config: RunConfig, data: RunData, split: Any, run_dir: Path, model: nn.Module,
              name: str, log: JsonlLog, n_train: int, progress: bool,
              tb: TensorBoardLog | None = None) -> dict[str, Any]:
    """Test on every sample of the fold's test part; metrics.json, model.pt and the plots."""
    from nasspeech.metrics import classification_report, count_parameters
    from nasspeech.plots import plot_confusion, plot_training_curves

    device = resolve_device(config.device)
    with autocast(device.type, config.train.precision):
        pred, true = predict(model, eval_stream(data.x.to(device), data.y.to(device),
                                                split.test, config.train.batch_size))
    report = classification_report(true, pred, data.class_names)
    head = getattr(model, "auxiliary", None)  # training only: out of params and model.pt
    aux = {"auxiliary_weight": config.train.auxiliary_weight,
           "auxiliary_params": count_parameters(head)} if head is not None else {}
    if head is not None:
        model.remove_auxiliary()
    metrics = {"model": name, "fold": split.index, "ua": report["ua"], "wa": report["wa"],
               "params": count_parameters(model), "n_test": report["n"], "n_train": n_train,
               "train_data": config.train.data,
               "per_class_recall": report["per_class_recall"], "confusion": report["confusion"],
               "class_names": report["class_names"], **aux}
    if metrics["n_test"] != len(split.test):
        raise WorkflowError(f"evaluated {metrics['n_test']} of {len(split.test)} test samples")
    state = model.state_dict()
    atomic_write_with(run_dir / "model.pt", lambda fh: torch.save(state, fh), fsync=True)
    if tb is not None:
        tb.train_result(metrics, config.train.epochs)
        tb.close()
    try_plot("the confusion matrix", lambda: plot_confusion(
        report["confusion"], data.class_names, run_dir / "confusion.png",
        title=f"{name}, fold {split.index}: UA {report['ua']:.1%}"), run_dir / "confusion.png")
    try_plot("the training curves", lambda: plot_training_curves(
        log.records(), run_dir / "curves.png"), run_dir / "curves.png")
    write_json(run_dir / "metrics.json", metrics)  # last: it marks the run finished
    if progress:
        extra = (f" (+{metrics['auxiliary_params']:,} in the auxiliary head, training only)"
                 if aux else "")
        print(f"{name} fold {split.index}: UA {metrics['ua']:.2%}  WA {metrics['wa']:.2%}  "
              f"params {metrics['params']:,}{extra}  ({metrics['n_test']} test clips)",
              file=sys.stderr)
    return metrics
