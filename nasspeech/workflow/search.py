"""``nasspeech search``: DARTS search on one fold's search set.

Weights are trained on a seeded part of the search set and the alphas on the rest
(``search.alpha_fraction``), with the step of :func:`nasspeech.search.recipe.build_search`.
Every epoch writes the genotype, the alpha softmax history, a JSONL record and an atomic
checkpoint, so an interrupted search resumes exactly.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from nasspeech.config import RunConfig
from nasspeech.genotype import Genotype
from nasspeech.io import atomic_write
from nasspeech.kernels.precision import autocast
from nasspeech.observe import TensorBoardLog
from nasspeech.search import NonFiniteLossError, predict
from nasspeech.search.recipe import build_search
from nasspeech.search.techniques.collapse import AuxSkip, CollapseGuard
from nasspeech.workflow.artifacts import try_plot
from nasspeech.workflow.checkpoint import save_checkpoint, seed_everything, set_rng_state
from nasspeech.workflow.datasets import BatchStream, RunData, eval_stream, split_search
from nasspeech.workflow.devices import resolve_device, use_threads
from nasspeech.workflow.resume import SEARCH_FIXED, resume_point
from nasspeech.workflow.rundir import (
    CHECKPOINT,
    JsonlLog,
    WorkflowError,
    open_run_dir,
    write_json,
)
from nasspeech.workflow.schedule import cosine_lr, set_hyper


@dataclass
class SearchResult:
    run_dir: Path
    genotype: Genotype
    epochs_run: int
    stopped: str | None
    alpha_history: list[dict[str, list[list[float]]]]


def run_search(
    config: RunConfig,
    data: RunData,
    fold: int,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    restart: bool = False,
) -> SearchResult:
    """Search on fold ``fold``; ``stop_after=k`` ends after epoch k (still resumable).

    ``resume`` continues from the checkpoint in ``out_dir`` (optimisation settings may have
    changed; a directory without a checkpoint starts again); ``restart`` deletes what
    ``out_dir`` holds first. The run directory is locked while the search runs."""
    data.fold(fold)  # a bad fold fails before the run directory exists
    with open_run_dir(out_dir, resume, restart) as run_dir, \
            use_threads(config.threads) as threads:
        return _search(config, data, fold, run_dir, resume, progress, stop_after, threads)


def _search(config: RunConfig, data: RunData, fold: int, run_dir: Path, resume: bool,
            progress: bool, stop_after: int | None, threads: dict[str, int]) -> SearchResult:
    sc = config.search
    split = data.fold(fold)
    device = resolve_device(config.device)
    w_idx, a_idx = split_search(split.search, sc.alpha_fraction, config.seed + fold)
    x, y = data.x.to(device), data.y.to(device)
    train_stream = BatchStream(x, y, w_idx, sc.batch_size, True, config.seed, salt=2 * fold)
    val_stream = BatchStream(x, y, a_idx, sc.batch_size, True, config.seed, salt=2 * fold + 1)

    seed_everything(config.seed + fold)
    model = config.space.build_supernet().to(device)
    recipe = build_search(sc, model)
    w_opt, architect = recipe.w_optimizer, recipe.architect
    aux = AuxSkip(model, sc.collapse.aux_skip_beta) if sc.collapse.remedy == "aux_skip" else None
    guard = CollapseGuard(sc.collapse)

    history: list[dict[str, list[list[float]]]] = []
    start, stopped, changes = 0, None, {}
    ckpt = None
    if resume:
        ckpt, changes = resume_point(run_dir, "search", fold, config.model_dump(mode="json"),
                                     SEARCH_FIXED, device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        w_opt.load_state_dict(ckpt["w_optimizer"])
        architect.optimizer.load_state_dict(ckpt["alpha_optimizer"])
        # the checkpoint restores the optimisers' state; their settings come from the config
        set_hyper(w_opt, momentum=sc.momentum, weight_decay=sc.weight_decay)
        set_hyper(architect.optimizer, lr=sc.alpha_lr, betas=tuple(sc.alpha_betas),
                  weight_decay=sc.alpha_weight_decay)
        history, start, stopped = ckpt["alpha_history"], ckpt["epoch"], ckpt.get("stopped")
        set_rng_state(ckpt["rng"])
    if (stopped or start >= sc.epochs) and (run_dir / "genotype.json").is_file():
        return SearchResult(run_dir, model.genotype(), len(history), stopped, history)  # done
    if not start:
        write_json(run_dir / "fold.json", {
            "fold": fold, "search_weights": len(w_idx), "search_alphas": len(a_idx),
            **split.summary()})
    config.save(run_dir / "config.yaml")  # the settings in effect
    log = JsonlLog(run_dir / "log.jsonl", keep_epochs=start)
    tb = TensorBoardLog.open(config, run_dir, start)  # None unless log.tensorboard
    end = sc.epochs if stop_after is None else min(sc.epochs, stop_after)
    steps = len(train_stream)
    bar = tqdm(total=sc.epochs * steps, initial=min(start, sc.epochs) * steps,
               disable=not progress, desc=f"search fold {fold}", unit="step",
               dynamic_ncols=True)
    epoch = start
    try:
        for epoch in range(start, end if stopped is None else start):
            t0 = time.perf_counter()
            lr = cosine_lr(epoch, sc.epochs, sc.lr, sc.lr_min)
            set_hyper(w_opt, lr=lr)
            beta = aux.set_epoch(epoch, sc.epochs) if aux else None
            val_batches = itertools.cycle(list(val_stream.epoch(epoch)))
            loss = correct = count = 0.0
            alpha_losses = []
            for step, batch in enumerate(train_stream.epoch(epoch)):
                try:
                    res = recipe.step(batch, next(val_batches), lr,
                                      update_alphas=epoch >= sc.warmup_epochs)
                except NonFiniteLossError as exc:
                    raise WorkflowError(_nan_message(exc, epoch, step, run_dir)) from None
                loss += res.loss * res.count
                correct, count = correct + res.correct, count + res.count
                if res.alpha_loss is not None:
                    alpha_losses.append(res.alpha_loss)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{res.loss:.3f}")
            genotype = model.genotype()
            atomic_write(run_dir / "genotypes" / f"epoch_{epoch + 1:03d}.json", genotype.to_json())
            softmax = model.alpha_softmax()
            history.append({k: v.tolist() for k, v in softmax.items()})
            with autocast(device.type, sc.precision):
                pred, true = predict(model, eval_stream(x, y, a_idx, sc.batch_size))
            report = guard.check(genotype, epoch, softmax)
            # print a component's first warning and any new high (every epoch's is in the log)
            for warning in report.new_warnings:
                tqdm.write(f"warning: {warning}", file=sys.stderr)
            log.write({
                "epoch": epoch + 1, "lr": lr, "train_loss": loss / count,
                "train_acc": correct / count,
                "alpha_loss": sum(alpha_losses) / len(alpha_losses) if alpha_losses else None,
                "val_acc": float((pred == true).float().mean()), "aux_skip_beta": beta,
                **report.to_json(), **threads, "seconds": round(time.perf_counter() - t0, 3),
                **({"config_changes": changes} if changes else {})})
            changes = {}  # logged with the first epoch after the resume
            write_json(run_dir / "alpha_history.json", history)
            if tb is not None:  # the epoch's record, alphas and genotype to TensorBoard
                tb.search_epoch(log.records()[-1], history[-1], genotype, pred, true,
                                architect.optimizer.param_groups[0]["lr"])
            stopped = report.stop
            save_checkpoint(run_dir / CHECKPOINT, {
                "kind": "search", "epoch": epoch + 1, "fold": fold,
                "config": config.model_dump(mode="json"), "model": model.state_dict(),
                "w_optimizer": w_opt.state_dict(),
                "alpha_optimizer": architect.optimizer.state_dict(),
                "alpha_history": history, "stopped": stopped})
            if stopped:
                tqdm.write(stopped, file=sys.stderr)
                break
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted in epoch {epoch + 1}: the checkpoint after epoch "
              f"{len(history)} is kept in {run_dir}; continue with --resume", file=sys.stderr)
        raise
    finally:
        bar.close()
        if aux:
            aux.remove()
        if tb is not None:
            tb.close()
    genotype = model.genotype()
    if len(history) >= sc.epochs or stopped:
        finish_search(run_dir, genotype, history, config)
    return SearchResult(run_dir, genotype, len(history), stopped, history)


def _nan_message(exc: Exception, epoch: int, step: int, run_dir: Path) -> str:
    kept = (f"the last good checkpoint (after epoch {epoch}) is kept in {run_dir / CHECKPOINT}"
            if epoch else "no epoch finished, so there is no checkpoint yet")
    return (f"search stopped in epoch {epoch + 1}, step {step + 1}: {exc}. {kept}; lower "
            "search.lr / search.alpha_lr or set search.grad_clip, then run again with --resume "
            "(changed optimisation settings are accepted)")


def finish_search(run_dir: Path, genotype: Genotype, history: list, config: RunConfig) -> None:
    """genotype.json, the cell plot and the alpha heat-map."""
    atomic_write(run_dir / "genotype.json", genotype.to_json())
    try_plot("the genotype", lambda: genotype.plot(run_dir / "genotype.png",
                                                   title=f"{config.name}: searched cells"),
             run_dir / "genotype.png")

    def alphas() -> None:
        from nasspeech.plots import plot_alpha_history

        op_names = {f"{c.name}.{kind}": list(c.ops)
                    for c in config.space.components for kind in c.cell_kinds()}
        plot_alpha_history(history, run_dir / "alphas.png", op_names=op_names)

    try_plot("the alpha history", alphas, run_dir / "alphas.png")
