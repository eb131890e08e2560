"""Bad inputs of the run commands (search, train, cv, demo): configs, folds, models, run
directories, checkpoints, resumes, imports. Each case: one bad input, one clear error."""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
from pathlib import Path

import pytest
import torch

from nasspeech.config import ConfigError, RunConfig
from nasspeech.workflow.checkpoint import save_checkpoint
from nasspeech.workflow.lock import LOCK_FILE, RunLock

from .table import Case, check, cli, params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from tiny_runs import tiny_dict, write_config


@pytest.fixture(scope="session")
def runs_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs-cache")


def cache(tmp: Path) -> Path:
    return (tmp / "cache").resolve()


def config(tmp: Path, name: str = "tiny.yaml", **sections) -> Path:
    """A tiny run config file in ``tmp`` with ``sections`` updated."""
    return write_config(tmp / name, tiny_dict(cache(tmp), **sections))


def with_space_ops(tmp: Path, ops: list[str]) -> dict:
    cfg = tiny_dict(cache(tmp))
    cfg["space"]["components"][0]["ops"] = ops
    return cfg


def run_dir(tmp: Path, checkpoint: dict | None = None) -> Path:
    """A run directory made by nasspeech (it has a lock file), optionally with a checkpoint."""
    path = tmp / "run"
    path.mkdir()
    (path / LOCK_FILE).touch()
    if checkpoint is not None:
        save_checkpoint(path / "checkpoint.pt", checkpoint)
    return path


def search(tmp: Path, *flags: str, cfg: Path | None = None):
    return cli("search", cfg or config(tmp), "--out", tmp / "run", "--quiet", *flags)


def checkpoint_of(tmp: Path, kind: str = "search", fold: int = 0, **cfg_changes) -> dict:
    cfg = RunConfig.model_validate(tiny_dict(cache(tmp), **cfg_changes))
    return {"kind": kind, "epoch": 1, "fold": fold, "config": cfg.model_dump(mode="json")}


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def crafted_checkpoint(tmp: Path):
    path = run_dir(tmp)
    marker = tmp / "payload-ran"
    torch.save({"epoch": 1, "model": Payload(marker)}, path / "checkpoint.pt")
    result = search(tmp, "--resume")
    assert not marker.exists(), "the crafted checkpoint ran code"
    return result


def torn_checkpoint(tmp: Path):
    path = run_dir(tmp, checkpoint_of(tmp))
    data = (path / "checkpoint.pt").read_bytes()
    (path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    return search(tmp, "--resume")


def locked(tmp: Path):
    path = tmp / "run"
    path.mkdir()
    lock = RunLock(path).acquire()
    try:
        return search(tmp, "--resume")
    finally:
        lock.release()


def existing(tmp: Path):
    (tmp / "run").mkdir()
    (tmp / "run" / "notes.txt").write_text("mine")
    return search(tmp)


def foreign_restart(tmp: Path):
    existing(tmp)
    result = search(tmp, "--restart")
    assert (tmp / "run" / "notes.txt").read_text() == "mine"
    return result


def fold_file(tmp: Path):
    (tmp / "folds.json").write_text(json.dumps({f"spk{i:02d}": i % 3 for i in range(1, 7)}))
    return search(tmp, "--fold", "5", cfg=config(tmp, data={"fold_file": "folds.json"}))


def user_module(tmp: Path, body: str) -> str:
    name = f"bad_user_module_{tmp.name.replace('-', '_')}"
    (tmp / f"{name}.py").write_text(body)
    return name


def import_flag(tmp: Path, body: str | None):
    name = user_module(tmp, body) if body is not None else "no_such_module_xyz"
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        return cli("train", config(tmp), "--model", "cnn", "--out", tmp / "run", "--quiet",
                   "--import", name)
    finally:
        os.chdir(cwd)


def relative_path(tmp: Path, field: dict) -> Path:
    (tmp / "configs").mkdir()
    return write_config(tmp / "configs" / "tiny.yaml", tiny_dict(cache(tmp), data=field))


CASES = [
    # config values
    Case("lr-inf", lambda t: search(t, cfg=config(t, search={"lr": math.inf})),
         r"search\.lr: .*finite number"),
    Case("nan-in-data-section",
         lambda t: search(t, cfg=config(t, data={"features": {
             **tiny_dict("c")["data"]["features"], "duration": math.nan}})),
         r"data\.features\.duration: must be a finite number \(got nan\)"),
    Case("inf-api", lambda t: RunConfig.from_mapping(tiny_dict(cache(t), train={"lr": -math.inf})),
         r"train\.lr: must be a finite number", error=ConfigError),
    Case("input-shape-vs-features",
         lambda t: search(t, cfg=config(t, space={**tiny_dict("c")["space"],
                                                   "input_shape": [1, 16, 16]})),
         r"space\.input_shape \[1, 16, 16\] does not match the features \[1, 8, 8\]"),
    Case("lr-min-above-lr", lambda t: search(t, cfg=config(t, search={"lr_min": 1.0})),
         r"lr_min 1\.0 is above lr"),
    # folds and models
    Case("fold-9", lambda t: search(t, "--fold", "9"),
         r"--fold 9: no such fold; data\.folds is 3 \(folds 0\.\.2\)"),
    Case("fold-minus-1", lambda t: cli("train", config(t), "--model", "cnn", "--fold", "-1",
                                       "--out", t / "run"), r"--fold -1: no such fold"),
    Case("cv-folds-7", lambda t: cli("cv", config(t), "--folds", "0", "7", "--out", t / "run"),
         r"--folds 7: no such fold"),
    Case("fold-outside-fold-file", fold_file, r"fold 5 does not exist: the data has 3 folds"),
    Case("train-model-bogus", lambda t: cli("train", config(t), "--model", "bogus"),
         r"unknown model 'bogus': choose searched or a baseline \(cnn, cnn_lstm"),
    Case("config-train-model-bogus",
         lambda t: cli("train", config(t, train={"model": "bogus"}), "--out", t / "run"),
         r"unknown model 'bogus'"),
    Case("cv-baseline-bogus",
         lambda t: cli("cv", config(t), "--baseline", "bogus", "--out", t / "run"),
         r"unknown model 'bogus'"),
    Case("searched-without-genotype", lambda t: cli("train", config(t), "--out", t / "run"),
         r"--genotype FILE is needed"),
    # run directories
    Case("run-dir-exists", existing,
         r"run/? already exists; pass --resume .*--restart .*another --out"),
    Case("run-dir-is-a-file",
         lambda t: ((t / "run").write_text("x"), search(t))[1], r"is not a directory"),
    Case("run-dir-locked", locked, rf"in use by pid {os.getpid()} on .*, since .*, running"),
    Case("restart-a-foreign-folder", foreign_restart,
         r"--restart refuses .*not a nasspeech run directory"),
    Case("resume-and-restart", lambda t: search(t, "--resume", "--restart"),
         r"--restart: not allowed with argument --resume"),
    Case("threads-zero", lambda t: search(t, "--threads", "0"), r"expected a number >= 1"),
    # checkpoints and resumes
    Case("crafted-checkpoint", crafted_checkpoint,
         r"refused to load .*checkpoint\.pt: it holds objects other than tensors"),
    Case("torn-checkpoint", torn_checkpoint,
         r"cannot read .*checkpoint\.pt: not a complete torch checkpoint"),
    Case("resume-with-changed-space",
         lambda t: (run_dir(t, {**checkpoint_of(t), "config": RunConfig.model_validate(
             with_space_ops(t, ["max_pool_3x3", "skip_connect", "none"])).model_dump(
             mode="json")}), search(t, "--resume"))[1],
         r"cannot resume .*space\.components\.0\.ops changed since it started.*--restart"),
    Case("resume-with-changed-seed",
         lambda t: (run_dir(t, checkpoint_of(t, seed=3)), search(t, "--resume"))[1],
         r"seed changed since it started"),
    Case("resume-on-another-fold",
         lambda t: (run_dir(t, checkpoint_of(t, fold=1)), search(t, "--resume"))[1],
         r"started on fold 1, not fold 0"),
    Case("resume-a-train-dir-as-search",
         lambda t: (run_dir(t, checkpoint_of(t, kind="train")), search(t, "--resume"))[1],
         r"holds a train run, not a search run"),
    # imports and paths
    Case("import-missing-module", lambda t: import_flag(t, None),
         r"--import: no module named 'no_such_module_xyz'"),
    Case("import-module-raises", lambda t: import_flag(t, "1 / 0\n"),
         r"importing 'bad_user_module_.*' failed: ZeroDivisionError"),
    Case("config-imports-missing-file",
         lambda t: search(t, cfg=config(t, imports=["ops/mine.py"])),
         r"imports: module file not found: /\S*/ops/mine\.py"),
    Case("relative-manifest-missing",
         lambda t: search(t, cfg=relative_path(t, {"corpus": "manifest",
                                                   "manifest": "lists/clips.csv"})),
         r"manifest /\S*/configs/lists/clips\.csv does not exist"),
    Case("relative-fold-file-missing",
         lambda t: search(t, cfg=relative_path(t, {"fold_file": "folds.json"})),
         r"fold file /.*/configs/folds\.json"),
    Case("scopes-dir-empty",
         lambda t: ((t / "empty").mkdir(), cli("cv", config(t), "--scopes", t / "empty"))[1],
         r"no \*\.yaml scope configs in /\S*/empty"),
]


@params(CASES)
def test_runs_bad_input(case: Case, tmp_path: Path, runs_cache: Path) -> None:
    (tmp_path / "cache").symlink_to(runs_cache)
    check(case, tmp_path)
