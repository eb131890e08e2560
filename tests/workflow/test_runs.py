"""Run directories: safe checkpoints, the lock, dead ends that resume, resume with changed
optimisation settings, --restart, cv resume, threads, relative paths, train.data."""

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_dict, write_config

import nasspeech.search.recipe as S  # the search step the workflow runs
import nasspeech.workflow.train as T
from nasspeech.cli.main import main
from nasspeech.config import RunConfig
from nasspeech.workflow.checkpoint import CheckpointError, load_checkpoint
from nasspeech.workflow.datasets import RunData, split_search, train_indices
from nasspeech.workflow.lock import RunLockedError
from nasspeech.workflow.rundir import CHECKPOINT, RunDirError, WorkflowError
from nasspeech.workflow.schedule import cosine_lr
from nasspeech.workflow.search import run_search
from nasspeech.workflow.train import run_train

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def with_changes(config: RunConfig, **sections) -> RunConfig:
    data = config.model_dump(mode="json")
    for name, update in sections.items():
        data[name].update(update)
    return RunConfig.model_validate(data)


class Payload:
    """Unpickling this creates a file: what a crafted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_checkpoints_load_weights_only_and_a_crafted_one_runs_no_code(tiny, tmp_path, capsys):
    config, data = tiny
    run = tmp_path / "run"
    run_search(config, data, 0, run, progress=False, stop_after=1)
    ckpt = load_checkpoint(run / CHECKPOINT)  # weights_only=True: the real one loads
    assert ckpt["epoch"] == 1 and isinstance(ckpt["rng"]["numpy"]["keys"], torch.Tensor)

    marker = tmp_path / "payload-ran"
    torch.save({"epoch": 1, "model": Payload(marker)}, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match=r"refused to load .*checkpoint\.pt.*could run code"):
        run_search(config, data, 0, run, resume=True, progress=False)
    assert not marker.exists()
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(config.data.cache_dir))
    assert main(["search", str(cfg), "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / CHECKPOINT) in err
    assert not marker.exists()
    torch.load(run / CHECKPOINT, weights_only=False)  # the payload is live: this runs it
    assert marker.exists()


def test_a_second_process_on_the_same_run_dir_fails_at_once(tiny, tmp_path):
    config, data = tiny
    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, time\nfrom nasspeech.workflow.lock import RunLock\n"
            "RunLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"in use by pid {holder.pid} on .*since .*"
                                                 rf"running `-c {re.escape(str(run))}`"):
            run_search(config, data, 0, run, resume=True, progress=False)
        assert not (run / "config.yaml").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    res = run_search(config, data, 0, run, resume=True, progress=False)  # the kernel freed it
    assert res.epochs_run == 2
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]  # no temp file left


def test_sigkill_in_epoch_1_leaves_a_directory_that_resumes(tiny_cache, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(tiny_cache))
    run = tmp_path / "run"
    killer = ("import os, signal, sys\nimport nasspeech.search.recipe as S\n"
              "S.search_step = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
              "from nasspeech.cli.main import main\nmain(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", killer, "search", str(cfg), "--out", str(run),
                           "--quiet"], env=ENV, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (run / "config.yaml").is_file() and not (run / CHECKPOINT).exists()
    assert main(["search", str(cfg), "--out", str(run), "--quiet"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["search", str(cfg), "--out", str(run), "--quiet", "--resume"]) == 0
    assert [r["epoch"] for r in records(run)] == [1, 2]
    assert (run / "genotype.json").is_file()


def test_nan_in_epoch_1_then_resume_starts_cleanly(tiny, tmp_path):
    config, data = tiny
    poisoned = RunData(torch.full_like(data.x, float("nan")), data.y, data.class_names,
                       data.folds)
    run = tmp_path / "run"
    with pytest.raises(WorkflowError, match=r"epoch 1, step 1.*no checkpoint yet.*--resume"):
        run_search(config, poisoned, 0, run, progress=False)
    assert not (run / CHECKPOINT).exists()
    with pytest.raises(RunDirError, match="already exists; pass --resume"):
        run_search(config, data, 0, run, progress=False)
    assert run_search(config, data, 0, run, resume=True, progress=False).epochs_run == 2

    trained = tmp_path / "train"
    with pytest.raises(WorkflowError, match=r"training stopped in epoch 1.*--resume"):
        run_train(config, poisoned, 0, trained, model_name="cnn", progress=False)
    res = run_train(config, data, 0, trained, model_name="cnn", progress=False, resume=True)
    assert res.metrics["n_test"] == len(data.fold(0).test)


def test_resume_accepts_a_lower_lr_and_refuses_a_changed_space(tiny, tmp_path):
    config, data = tiny
    config = with_changes(config, search={"epochs": 3})
    run = tmp_path / "run"
    run_search(config, data, 0, run, progress=False, stop_after=1)

    space = config.model_dump(mode="json")["space"]
    space["components"][0]["ops"] = ["max_pool_3x3", "skip_connect", "none"]
    for bad, field in ((with_changes(config, space=space), "space.components.0.ops"),
                       (config.model_copy(update={"seed": 7}), "seed"),
                       (with_changes(config, search={"alpha_fraction": 0.3}),
                        "search.alpha_fraction")):
        with pytest.raises(RunDirError, match=rf"cannot resume .*{field} changed"):
            run_search(bad, data, 0, run, resume=True, progress=False)
    with pytest.raises(RunDirError, match="started on fold 0, not fold 1"):
        run_search(config, data, 1, run, resume=True, progress=False)

    lower = with_changes(config, search={"lr": 0.01, "grad_clip": 1.0})
    res = run_search(lower, data, 0, run, resume=True, progress=False)
    assert res.epochs_run == 3
    log = records(run)
    assert log[1]["config_changes"] == {"search.lr": [0.05, 0.01], "search.grad_clip": [5.0, 1.0]}
    assert "config_changes" not in log[2]
    assert log[1]["lr"] == pytest.approx(cosine_lr(1, 3, 0.01, 0.005))
    assert RunConfig.load(run / "config.yaml").search.lr == 0.01  # the settings in effect


def test_train_resume_is_exact_and_a_finished_run_is_not_trained_again(tiny, tmp_path,
                                                                        monkeypatch):
    config, data = tiny
    config = with_changes(config, train={"epochs": 3})
    full = run_train(config, data, 0, tmp_path / "full", model_name="cnn", progress=False)
    real_step, calls = T.weight_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(T, "weight_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_train(config, data, 0, tmp_path / "part", model_name="cnn", progress=False)
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT)["epoch"] == 1
    monkeypatch.setattr(T, "weight_step", real_step)
    resumed = run_train(config, data, 0, tmp_path / "part", model_name="cnn", progress=False,
                        resume=True)
    a = load_checkpoint(tmp_path / "full" / "model.pt")
    b = load_checkpoint(tmp_path / "part" / "model.pt")
    for key in a:  # the same computation on the same machine
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics == full.metrics

    monkeypatch.setattr(T, "weight_step", interrupted)  # a finished run takes no step
    calls.clear()
    again = run_train(config, data, 0, tmp_path / "part", model_name="cnn", progress=False,
                      resume=True)
    assert not calls and again.metrics == full.metrics


def test_restart_starts_over_in_place_and_spares_foreign_folders(tiny, tmp_path):
    config, data = tiny
    run = tmp_path / "run"
    run_search(config, data, 0, run, progress=False, stop_after=1)
    (run / "old-note.txt").write_text("from the first run")
    res = run_search(config, data, 0, run, restart=True, progress=False)
    assert res.epochs_run == 2 and not (run / "old-note.txt").exists()
    assert [r["epoch"] for r in records(run)] == [1, 2]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    for flags in ({"restart": True}, {"resume": True}):
        with pytest.raises(RunDirError, match="not a nasspeech run directory"):
            run_search(config, data, 0, foreign, progress=False, **flags)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]


def test_cv_resumes_without_rerunning_finished_jobs_and_prints_the_tables_once(
        tiny, tiny_cache, tmp_path, monkeypatch, capsys):
    _, data = tiny
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(tiny_cache))
    out = tmp_path / "cv"
    argv = ["cv", str(cfg), "--out", str(out), "--baseline", "cnn", "--quiet"]
    real_search, real_train = S.search_step, T.weight_step
    searches, trains = [], []
    steps = {k: math.ceil(len(split_search(data.fold(k).search, 0.5, k)[0]) / 64)
             for k in range(3)}

    def search_step(*args, **kwargs):
        searches.append(1)
        if len(searches) == 2 * steps[0] + steps[1] + 1:  # fold 1, epoch 2
            raise RuntimeError("power cut")
        return real_search(*args, **kwargs)

    def weight_step(*args, **kwargs):
        trains.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(S, "search_step", search_step)
    monkeypatch.setattr(T, "weight_step", weight_step)
    with pytest.raises(RuntimeError, match="power cut"):
        main(argv)
    fold0 = {p: p.stat().st_mtime_ns for p in (out / "fold_0").rglob("*") if p.is_file()}
    assert (out / "fold_0" / "cnn" / "metrics.json") in fold0
    assert load_checkpoint(out / "fold_1" / "search" / CHECKPOINT)["epoch"] == 1
    capsys.readouterr()

    assert main(argv) == 2  # an existing cv directory needs --resume (which cv has)
    assert "pass --resume" in capsys.readouterr().err
    searches.clear()
    trains.clear()

    def counted(*args, **kwargs):
        searches.append(1)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(S, "search_step", counted)
    assert main([*argv, "--resume"]) == 0
    assert len(searches) == steps[1] + 2 * steps[2]  # only fold 1's epoch 2 and fold 2
    train_steps = math.ceil(len(data.fold(1).train) / 64) * 2  # per model, 2 epochs
    assert len(trains) == 2 * 2 * train_steps  # folds 1 and 2, searched + cnn
    assert {p: p.stat().st_mtime_ns for p in fold0} == fold0  # fold 0 untouched
    assert [r["epoch"] for r in records(out / "fold_1" / "search")] == [1, 2]
    result = capsys.readouterr()
    assert result.out.count("**tiny: searched**") == 1
    assert "**tiny: searched**" not in result.err
    assert len(json.loads((out / "results.json").read_text())["models"]["cnn"]) == 3


def test_threads_setting_and_flag_are_applied_and_logged(tiny_cache, tmp_path):
    before = torch.get_num_threads()
    cfg = write_config(tmp_path / "tiny.yaml", {**tiny_dict(tiny_cache), "threads": 2})
    assert main(["train", str(cfg), "--model", "cnn", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert {r["threads"] for r in records(tmp_path / "a")} == {2}
    assert main(["train", str(cfg), "--model", "cnn", "--out", str(tmp_path / "b"),
                 "--quiet", "--threads", "1"]) == 0
    assert {r["threads"] for r in records(tmp_path / "b")} == {1}
    assert torch.get_num_threads() == before  # restored after the run


def test_relative_paths_in_a_config_are_relative_to_its_folder(tiny_cache, tmp_path,
                                                               monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    cfg = tiny_dict("cache")
    cfg["data"].update(fold_file="folds/my_folds.json", demo={"out_dir": "../corpus"})
    write_config(folder / "tiny.yaml", cfg)
    monkeypatch.chdir(tmp_path)
    config = RunConfig.load("configs/tiny.yaml")
    assert config.data.cache_dir == str(folder / "cache")
    assert config.data.fold_file == str(folder / "folds" / "my_folds.json")
    assert config.data.demo.out_dir == str(tmp_path / "corpus")
    assert config.data.manifest is None  # unset paths stay unset
    del cfg["data"]["cache_dir"]
    default = RunConfig.load(write_config(folder / "default.yaml", cfg))
    assert default.data.cache_dir == ".nasspeech-cache"  # a default: relative to the cwd


def test_train_data_protocols_differ_as_documented(tiny, tmp_path):
    config, data = tiny
    split = data.fold(0)
    sizes = {}
    for what in ("train", "search+train"):
        cfg = with_changes(config, train={"data": what, "epochs": 1})
        res = run_train(cfg, data, 0, tmp_path / what, model_name="cnn", progress=False)
        sizes[what] = res.metrics["n_train"]
        assert not set(train_indices(split, what)) & set(split.test)  # never the test speakers
        assert res.metrics["train_data"] == what
    assert sizes["train"] == len(split.train)
    assert sizes["search+train"] == len(split.search) + len(split.train) > sizes["train"]
    assert split.search and sizes["search+train"] == len(data.x) - len(split.test)


def test_a_resumed_run_refuses_a_changed_train_protocol(tiny, tmp_path):
    config, data = tiny
    run_train(config, data, 0, tmp_path / "t", model_name="cnn", progress=False)
    changed = with_changes(config, train={"data": "search+train"})
    with pytest.raises(RunDirError, match="train.data changed"):
        run_train(changed, data, 0, tmp_path / "t", model_name="cnn", progress=False,
                  resume=True)
