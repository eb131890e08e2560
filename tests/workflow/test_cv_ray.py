"""``nasspeech cv --executor ray``: the same run directory and results as the serial executor,
resume after a killed driver, a killed worker's job retried from its checkpoint, plugin and
user ops in the workers, a failing job reported while the others finish, and the serial
executor without Ray. One local Ray (2 CPUs) serves the whole module."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tiny_runs import tiny_data, tiny_dict, write_config

from nasspeech.config import RunConfig
from nasspeech.workflow.cv import run_cv
from nasspeech.workflow.executors.serial import SerialExecutor
from nasspeech.workflow.jobs import Job, JobsFailedError, Schedule, Scope, plan_jobs
from nasspeech.workflow.lock import HOLDER_FILE
from tests.test_plugins import needs_seqplus

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
THREADS = int(os.environ.get("NASSPEECH_TEST_THREADS", "1"))
FOLDS, BASELINES = [0, 1], ("cnn",)
#: Search 3 epochs (so a kill can land mid-search), retrain 2; torch threads as the suite's.
SECTIONS = {"search": {"epochs": 3}}


def executor(**options):
    from nasspeech.workflow.executors.ray import RayExecutor

    return RayExecutor(cpus_per_task=THREADS, **options)


@pytest.fixture(scope="module")
def local_ray():
    # keep this driver's idle workers while another driver's come and go (they take seconds
    # to start on a busy machine)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             _system_config={"num_workers_soft_limit": 6})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, local_ray):
    """The config file, its (config, data), and the serial reference run."""
    folder = tmp_path_factory.mktemp("cv-ray")
    path = write_config(folder / "tiny.yaml", {**tiny_dict(folder / "cache", **SECTIONS),
                                               "threads": THREADS})
    config = RunConfig.load(path)
    data = tiny_data(config)
    reference = folder / "serial"
    run_cv(config, data, reference, folds=FOLDS, baselines=BASELINES, progress=False)
    return path, config, data, reference


def files(run: Path) -> set[str]:
    """A run directory's files, without the temp files of writes a SIGKILL interrupted."""
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()
            and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def records(log: Path) -> list[dict]:
    """A log.jsonl's records without their timings."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in log.read_text().splitlines()]


def assert_same_run(run: Path, reference: Path) -> None:
    """Same files, tables, genotypes and per-epoch losses as the serial reference."""
    assert files(run) == files(reference)
    for name in ("results.md", "results.json"):
        assert (run / name).read_text() == (reference / name).read_text()
    for k in FOLDS:
        fold = f"fold_{k}"
        assert ((run / fold / "search" / "genotype.json").read_text()
                == (reference / fold / "search" / "genotype.json").read_text())
        for part in ("search", "train", *BASELINES):
            assert records(run / fold / part / "log.jsonl") == \
                records(reference / fold / part / "log.jsonl")


def test_schedule_orders_jobs_and_skips_what_needs_a_failed_job():
    jobs = plan_jobs([Scope("", None, None, [0, 1], ("cnn",))])  # config, data unused
    assert [j.key for j in jobs] == ["fold_0/search", "fold_0/train", "fold_0/cnn",
                                     "fold_1/search", "fold_1/train", "fold_1/cnn"]
    lines = []
    schedule = Schedule(jobs, lines.append)
    assert schedule.ready() == [j for j in jobs if j.model != "searched"]
    schedule.start(jobs[0])
    schedule.fail(jobs[0], "boom")
    assert schedule.outcomes[Job("", 0, "searched")].skipped == "fold_0/search failed"
    assert Job("", 0, "searched") not in schedule.ready()
    assert any("fold_0/train: skipped" in line for line in lines)
    assert schedule.counts() == {"done": 0, "running": 0, "failed": 1, "skipped": 1,
                                 "waiting": 4}


def test_ray_writes_the_same_run_as_the_serial_executor(setup, tmp_path):
    _, config, data, reference = setup
    res = run_cv(config, data, tmp_path / "ray", folds=FOLDS, baselines=BASELINES,
                 progress=False, executor=executor())
    assert_same_run(tmp_path / "ray", reference)
    assert res.tables["searched"]["mean"]["ua"] == json.loads(
        (reference / "results.json").read_text())["tables"]["searched"]["mean"]["ua"]
    assert not (tmp_path / "ray" / ".ray-driver.json").exists()


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def holders_gone(run: Path) -> bool:
    """No process holds a job folder's lock any more (a killed driver's workers ended)."""
    for holder in run.rglob(HOLDER_FILE):
        try:
            os.kill(json.loads(holder.read_text())["pid"], 0)
        except (ProcessLookupError, FileNotFoundError, ValueError):
            continue
        return False
    return True


def test_a_killed_driver_resumes_skipping_finished_jobs(setup, tmp_path):
    path, config, data, reference = setup
    out = tmp_path / "run"
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "-m", "nasspeech", "cv", str(path), "--out", str(out), "--quiet",
         "--folds", *map(str, FOLDS), "--baseline", *BASELINES, "--executor", "ray",
         "--address", address, "--cpus-per-task", str(THREADS)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(out.glob("fold_*/search/genotype.json"))
                 or driver.poll() is not None, 120, "the driver's first finished job")
        driver.send_signal(signal.SIGKILL)
    finally:
        _, err = driver.communicate(timeout=30)
    assert driver.returncode == -signal.SIGKILL, err.decode()
    assert not (out / "results.md").exists()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("fold_*/search/genotype.json")}
    assert finished
    wait_for(lambda: holders_gone(out), 30, "the killed driver's workers to end")

    run_cv(config, data, out, folds=FOLDS, baselines=BASELINES, progress=False, resume=True,
           executor=executor())
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not run again
    assert_same_run(out, reference)  # the interrupted jobs resumed exactly


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(setup, tmp_path,
                                                                     monkeypatch, capsys):
    _, config, data, reference = setup
    marker = tmp_path / "killed"
    monkeypatch.setenv("NASSPEECH_TEST_KILL_AFTER_CHECKPOINT", f"fold_0/search={marker}")
    out = tmp_path / "run"
    run_cv(config, data, out, folds=[0], progress=True, executor=executor())
    assert int(marker.read_text()) != os.getpid()  # the worker killed itself once
    search = out / "fold_0" / "search"
    first_epoch = (search / "genotypes" / "epoch_001.json").stat().st_mtime_ns
    assert first_epoch < marker.stat().st_mtime_ns  # epoch 1 was not computed again
    assert "resumed from its checkpoint after its worker died" in capsys.readouterr().err
    assert [r["epoch"] for r in records(search / "log.jsonl")] == [1, 2, 3]
    assert records(search / "log.jsonl") == records(reference / "fold_0/search/log.jsonl")
    assert (search / "genotype.json").read_text() == \
        (reference / "fold_0/search/genotype.json").read_text()


USER_MODULE = '''
import os
from pathlib import Path

from nasspeech import get_op, register_op
from nasspeech.baselines import register_baseline


@register_op("seq", "{op}")
def user_lstm(channels, stride=1):
    with open(Path(__file__).with_name("built_by"), "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    return get_op("seq", "lstm_1").build(channels, stride)


@register_baseline("{broken}")
def broken(input_shape, num_classes):
    with open(Path(__file__).with_name("broken_runs"), "a") as f:
        f.write("run\\n")
    raise RuntimeError("this baseline is broken on purpose")
'''


@needs_seqplus
def test_plugin_and_user_ops_in_workers_a_failing_job_and_shipped_artifacts(
        setup, tmp_path, capsys):
    tag = uuid.uuid4().hex[:8]
    op, broken = f"user_lstm_{tag}", f"broken_{tag}"
    (tmp_path / f"user_ops_{tag}.py").write_text(USER_MODULE.format(op=op, broken=broken))
    cfg = tiny_dict(setup[1].data.cache_dir, search={"epochs": 1}, train={"epochs": 1})
    cfg["space"]["components"][1]["ops"] = ["gru_1", op, "none"]  # a plugin's, a user's
    cfg.update(threads=THREADS, imports=[f"user_ops_{tag}"])
    config = RunConfig.load(write_config(tmp_path / "run.yaml", cfg))
    data = tiny_data(config)
    out = tmp_path / "run"

    with pytest.raises(JobsFailedError) as info:
        run_cv(config, data, out, folds=[0], baselines=("cnn", broken), progress=True,
               executor=executor(ship_artifacts=True))
    message = str(info.value)
    assert message.splitlines()[0].startswith("1 of 4 jobs failed")
    assert f"fold_0/{broken}: RuntimeError: this baseline is broken on purpose" in message
    assert f"fold_0/{broken}: FAILED" in capsys.readouterr().err
    assert (tmp_path / "broken_runs").read_text() == "run\n"  # not retried
    builders = {int(p) for p in (tmp_path / "built_by").read_text().split()}
    assert builders - {os.getpid()}  # the user op was built in the workers too
    for part in ("search/genotype.json", "search/checkpoint.pt", "search/alphas.png",
                 "train/metrics.json", "train/model.pt", "cnn/metrics.json"):
        assert (out / "fold_0" / part).stat().st_size > 0, part  # shipped back and written
    assert not (out / "results.md").exists()

    kept = {p: p.stat().st_mtime_ns for p in (out / "fold_0").rglob("*") if p.is_file()
            and p.name not in (".lock", ".lock.json")}
    res = run_cv(config, data, out, folds=[0], baselines=("cnn",), progress=False,
                 resume=True, executor=executor(ship_artifacts=True))
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished: nothing sent back
    assert set(res.per_model) == {"searched", "cnn"}


def test_scopes_and_baselines_in_one_ray_run_match_the_serial_run(setup, tmp_path):
    import yaml

    from nasspeech.workflow.cv import run_scopes

    path, config, _, _ = setup
    cfg = yaml.safe_load(path.read_text())
    cfg.update(search={**cfg["search"], "epochs": 1}, train={**cfg["train"], "epochs": 1})
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    for name, ops in (("lstm_only", ["lstm_1"]), ("rnn_only", ["rnn_1"])):
        cfg["space"]["components"][1]["ops"] = [*ops, "skip_connect", "none"]
        write_config(scopes / f"{name}.yaml", cfg)
    paths = sorted(scopes.glob("*.yaml"))
    runs = {}
    for name, chosen in (("serial", None), ("ray", executor())):
        runs[name] = run_scopes(paths, tmp_path / name, folds=[0], progress=False,
                                baselines=("cnn",), baseline_config=config, executor=chosen)
    assert runs["ray"][0] == runs["serial"][0]
    assert [r["name"] for r in runs["ray"][0]] == ["lstm_only", "rnn_only"]
    assert files(tmp_path / "ray") == files(tmp_path / "serial")
    for name in ("lstm_only", "rnn_only", "baselines"):
        assert ((tmp_path / "ray" / name / "results.json").read_text()
                == (tmp_path / "serial" / name / "results.json").read_text())
    assert list(json.loads((tmp_path / "ray/baselines/results.json").read_text())["models"]) \
        == ["cnn"]


def test_ctrl_c_cancels_the_tasks_and_leaves_a_resumable_run(setup, tmp_path, capsys):
    """(Last of the Ray tests: the cancelled tasks' workers are killed.)"""
    import _thread
    import threading

    _, config, data, _ = setup
    out = tmp_path / "run"

    def interrupt() -> None:
        wait_for(lambda: any(out.glob("fold_*/search/checkpoint.pt")), 120, "a checkpoint")
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_cv(config, data, out, folds=FOLDS, progress=True, executor=executor())
    assert "running job(s) cancelled; finished jobs are kept; continue with --resume" in \
        capsys.readouterr().err
    wait_for(lambda: holders_gone(out), 30, "the cancelled tasks' workers to end")
    assert any(out.glob("fold_*/search/checkpoint.pt"))
    assert not (out / "results.md").exists() and not (out / ".ray-driver.json").exists()


def test_serial_executor_needs_no_ray(tiny_cache, tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml",
                       tiny_dict(tiny_cache, search={"epochs": 1}, train={"epochs": 1}))
    script = (
        "import sys\n"
        "sys.modules['ray'] = None  # import ray fails\n"
        "from nasspeech.cli.main import main\n"
        f"args = ['cv', {str(cfg)!r}, '--folds', '0', '--quiet', '--out']\n"
        f"assert main(args + [{str(tmp_path / 'serial')!r}, '--executor', 'serial']) == 0\n"
        f"sys.exit(main(args + [{str(tmp_path / 'ray')!r}, '--executor', 'ray']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert (tmp_path / "serial" / "results.json").is_file()
    assert "pip install 'nasspeech[ray]'" in done.stderr
    assert not (tmp_path / "ray").exists()


def test_serial_executor_keep_going_records_a_failure(tiny, tmp_path):
    config, data = tiny
    config = config.model_copy(update={"train": config.train.model_copy(
        update={"epochs": 1, "baseline_options": {"no_such_option": 1}})})
    with pytest.raises(JobsFailedError, match="fold_0/cnn: train.baseline_options"):
        run_cv(config, data, tmp_path / "run", folds=[0], baselines=("cnn",),
               progress=False, executor=SerialExecutor(keep_going=True))
    assert (tmp_path / "run" / "fold_0" / "train" / "metrics.json").is_file()
