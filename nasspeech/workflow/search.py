"""``nasspeech search``: DARTS search on one fold's search set.

Weights are trained on a seeded part of the search set and the alphas on the rest
(``search.alpha_fraction``), with the step of :func:`nasspeech.search.recipe.build_search`.
Every epoch writes the genotype, the alpha softmax history (and the PC-DARTS edge weights where
a component has edge normalisation), a JSONL record and an atomic checkpoint, so an
interrupted search resumes exactly.

Data-parallel (a :class:`~nasspeech.search.distributed.Group`, docs/distributed.md):
every process runs this loop on its slice of the same global batches; process 0 alone opens
and writes the run directory and sends a checkpoint to resume to the others.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from nasspeech.config import RunConfig
from nasspeech.genotype import Genotype
from nasspeech.io import atomic_write
from nasspeech.kernels.precision import autocast
from nasspeech.kernels.recompute import recompute_depthwise
from nasspeech.observe import TensorBoardLog
from nasspeech.search import NonFiniteLossError, predict
from nasspeech.search.distributed import Group, check_world
from nasspeech.search.recipe import build_search
from nasspeech.search.techniques.collapse import AuxSkip, CollapseGuard
from nasspeech.space.supernet import Supernet
from nasspeech.workflow.artifacts import try_plot
from nasspeech.workflow.checkpoint import save_checkpoint, seed_everything, set_rng_state
from nasspeech.workflow.datasets import BatchStream, RunData, eval_stream, split_search
from nasspeech.workflow.devices import cpu_memory_cache, resolve_device, use_threads
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
    #: per epoch, each edge's share of its node (components with edge normalisation only)
    beta_history: list[dict[str, list[float]]] = field(default_factory=list)


def run_search(
    config: RunConfig,
    data: RunData,
    fold: int,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    restart: bool = False,
    group: Group | None = None,
) -> SearchResult:
    """Search on fold ``fold``; ``stop_after=k`` ends after epoch k (still resumable).

    ``resume`` continues from the checkpoint in ``out_dir`` (optimisation settings may have
    changed; a directory without a checkpoint starts again); ``restart`` deletes what
    ``out_dir`` holds first. The run directory is locked while the search runs.

    ``group``: this process's place in a data-parallel search (every process calls this with
    the same arguments); without ``config.threads`` each process then uses one CPU thread."""
    data.fold(fold)  # a bad fold fails before the run directory exists
    threads = config.threads
    if group is not None:
        check_world(config.search.batch_size, group.world_size)
        if threads is None and group.device.type == "cpu":
            threads = 1
    device = resolve_device(config.device) if group is None else group.device
    if group is None or group.is_main:
        with group.main_setup() if group else contextlib.nullcontext(), \
                open_run_dir(out_dir, resume, restart) as run_dir, \
                use_threads(threads) as used, cpu_memory_cache(device), \
                recompute_depthwise(config.search.recompute_depthwise):
            return _search(config, data, fold, run_dir, resume, progress, stop_after, used,
                           device, group)
    with use_threads(threads) as used, cpu_memory_cache(device), \
            recompute_depthwise(config.search.recompute_depthwise):  # the others write nothing
        return _search(config, data, fold, Path(out_dir), resume, False, stop_after, used,
                       device, group)


def _search(config: RunConfig, data: RunData, fold: int, run_dir: Path, resume: bool,
            progress: bool, stop_after: int | None, threads: dict[str, int],
            device: torch.device, group: Group | None = None) -> SearchResult:
    sc = config.search
    split = data.fold(fold)
    main = group is None or group.is_main
    w_idx, a_idx = split_search(split.search, sc.alpha_fraction, config.seed + fold)
    x, y = data.x.to(device), data.y.to(device)
    train_stream = BatchStream(x, y, w_idx, sc.batch_size, True, config.seed, salt=2 * fold)
    val_stream = BatchStream(x, y, a_idx, sc.batch_size, True, config.seed, salt=2 * fold + 1)

    seed_everything(config.seed + fold)
    model = config.space.build_supernet().to(device)
    recipe = build_search(sc, model, group=group)
    w_opt, architect = recipe.w_optimizer, recipe.architect
    aux = AuxSkip(model, sc.collapse.aux_skip_beta) if sc.collapse.remedy == "aux_skip" else None
    guard = CollapseGuard(sc.collapse)

    history: list[dict[str, list[list[float]]]] = []
    beta_history: list[dict[str, list[float]]] = []
    start, stopped, changes = 0, None, {}
    ckpt = None
    if resume and main:  # processes other than 0 get the checkpoint from it
        ckpt, changes = resume_point(run_dir, "search", fold, config.model_dump(mode="json"),
                                     SEARCH_FIXED, device if group is None else "cpu")
    done = ckpt is not None and (bool(ckpt.get("stopped")) or ckpt["epoch"] >= sc.epochs) \
        and main and (run_dir / "genotype.json").is_file()
    if group is not None:
        ckpt, done = group.share_setup((ckpt, done))
    if ckpt is not None:
        _check_betas(run_dir, model, ckpt["model"])
        model.load_state_dict(ckpt["model"])
        w_opt.load_state_dict(ckpt["w_optimizer"])
        architect.optimizer.load_state_dict(ckpt["alpha_optimizer"])
        # the checkpoint restores the optimisers' state; their settings come from the config
        set_hyper(w_opt, momentum=sc.momentum, weight_decay=sc.weight_decay)
        set_hyper(architect.optimizer, lr=sc.alpha_lr, betas=tuple(sc.alpha_betas),
                  weight_decay=sc.alpha_weight_decay)
        history, start, stopped = ckpt["alpha_history"], ckpt["epoch"], ckpt.get("stopped")
        beta_history = ckpt.get("beta_history", [])
        set_rng_state(ckpt["rng"])
    if group is not None:
        group.broadcast_module(model)  # process 0's weights and alphas, everywhere
    if done:
        return SearchResult(run_dir, model.genotype(), len(history), stopped, history,
                            beta_history)
    log = tb = None
    if main:
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
            sent = group.bytes_reduced if group else 0
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
            if not main:  # process 0 writes, evaluates and decides; the others follow it
                history.append({k: v.tolist() for k, v in model.alpha_softmax().items()})
                betas = {k: v.tolist() for k, v in model.beta_softmax().items()}
                if betas:
                    beta_history.append(betas)
                stopped = _sync_epoch(group, model, None, sc.check_ranks, epoch)
                if stopped:
                    break
                continue
            atomic_write(run_dir / "genotypes" / f"epoch_{epoch + 1:03d}.json", genotype.to_json())
            softmax = model.alpha_softmax()
            history.append({k: v.tolist() for k, v in softmax.items()})
            betas = {k: v.tolist() for k, v in model.beta_softmax().items()}
            if betas:
                beta_history.append(betas)
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
                **report.to_json(), **threads, **_group_record(group, sent),
                "seconds": round(time.perf_counter() - t0, 3),
                **({"config_changes": changes} if changes else {})})
            changes = {}  # logged with the first epoch after the resume
            write_json(run_dir / "alpha_history.json", history)
            if betas:
                write_json(run_dir / "beta_history.json", beta_history)
            if tb is not None:  # the epoch's record, alphas and genotype to TensorBoard
                tb.search_epoch(log.records()[-1], history[-1], genotype, pred, true,
                                architect.optimizer.param_groups[0]["lr"], betas)
            stopped = report.stop
            save_checkpoint(run_dir / CHECKPOINT, {
                "kind": "search", "epoch": epoch + 1, "fold": fold,
                "config": config.model_dump(mode="json"), "model": model.state_dict(),
                "w_optimizer": w_opt.state_dict(),
                "alpha_optimizer": architect.optimizer.state_dict(),
                "alpha_history": history, "beta_history": beta_history, "stopped": stopped})
            if group is not None:
                stopped = _sync_epoch(group, model, stopped, sc.check_ranks, epoch)
            if stopped:
                tqdm.write(stopped, file=sys.stderr)
                break
    except KeyboardInterrupt:
        bar.close()
        if main:
            print(f"\ninterrupted in epoch {epoch + 1}: the checkpoint after epoch "
                  f"{len(history)} is kept in {run_dir}; continue with --resume",
                  file=sys.stderr)
        raise
    finally:
        bar.close()
        if aux:
            aux.remove()
        if tb is not None:
            tb.close()
    genotype = model.genotype()
    if main and (len(history) >= sc.epochs or stopped):
        finish_search(run_dir, genotype, history, config, beta_history)
    return SearchResult(run_dir, genotype, len(history), stopped, history, beta_history)


def _check_betas(run_dir: Path, model: Any, state: dict) -> None:
    """A checkpoint from before edge normalisation existed has no betas to restore."""
    betas = {id(b) for b in model.named_betas().values()}
    missing = [n for n, p in model.named_parameters() if id(p) in betas and n not in state]
    if missing:
        raise WorkflowError(
            f"cannot resume {run_dir}: its checkpoint holds no PC-DARTS edge weights (beta) "
            f"for component {missing[0].split('.')[1]!r}: it was written before edge "
            "normalisation existed, which partial_channels > 1 now turns on; pass --restart "
            "to search again with it, or finish the run with the nasspeech version that "
            "started it")


def _group_record(group: Group | None, sent: int) -> dict[str, int]:
    """The log's data-parallel fields: processes and bytes all-reduced by each this epoch."""
    if group is None:
        return {}
    return {"processes": group.world_size, "allreduce_bytes": group.bytes_reduced - sent}


def _sync_epoch(group: Group, model: Supernet, stopped: str | None, check: bool,
                epoch: int) -> str | None:
    """Process 0's BatchNorm statistics and stop decision, everywhere; with ``check``
    (``search.check_ranks``), fail unless every process holds the same alphas, weights and
    buffers, bit for bit."""
    group.broadcast_tensors(list(model.buffers()))
    stopped = group.broadcast_object(stopped)
    if check:
        group.check_identical({"alphas": list(model.alpha_parameters()),
                               "weights": list(model.weight_parameters()),
                               "buffers": list(model.buffers())}, f"after epoch {epoch + 1}")
    return stopped


def _nan_message(exc: Exception, epoch: int, step: int, run_dir: Path) -> str:
    kept = (f"the last good checkpoint (after epoch {epoch}) is kept in {run_dir / CHECKPOINT}"
            if epoch else "no epoch finished, so there is no checkpoint yet")
    return (f"search stopped in epoch {epoch + 1}, step {step + 1}: {exc}. {kept}; lower "
            "search.lr / search.alpha_lr or set search.grad_clip, then run again with --resume "
            "(changed optimisation settings are accepted)")


def finish_search(run_dir: Path, genotype: Genotype, history: list, config: RunConfig,
                  beta_history: list | None = None) -> None:
    """The cell plot, the alpha heat-map, (edge normalisation) the beta one, then
    genotype.json: written last, it marks the search finished (a kill while plotting leaves a
    search that --resume finishes)."""
    try_plot("the genotype", lambda: genotype.plot(run_dir / "genotype.png",
                                                   title=f"{config.name}: searched cells"),
             run_dir / "genotype.png")

    def alphas() -> None:
        from nasspeech.plots import plot_alpha_history

        op_names = {f"{c.name}.{kind}": list(c.ops)
                    for c in config.space.components for kind in c.cell_kinds()}
        plot_alpha_history(history, run_dir / "alphas.png", op_names=op_names)

    try_plot("the alpha history", alphas, run_dir / "alphas.png")
    if beta_history:
        def betas() -> None:
            from nasspeech.observe.tensorboard import edge_names
            from nasspeech.plots import plot_beta_history

            labels = {f"{c.name}.{kind}": edge_names(c.nodes)
                      for c in config.space.components for kind in c.cell_kinds()}
            plot_beta_history(beta_history, run_dir / "betas.png", edge_labels=labels)

        try_plot("the beta history", betas, run_dir / "betas.png")
    atomic_write(run_dir / "genotype.json", genotype.to_json())
