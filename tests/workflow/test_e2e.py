"""End to end through the CLI on a tiny config: search -> train -> evaluate, files and metric
ranges; an exact resume; bad input handled with clear errors."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from nasspeech.cli.main import main
from nasspeech.config import RunConfig
from nasspeech.workflow.checkpoint import load_checkpoint
from nasspeech.workflow.datasets import load_run_data
from nasspeech.workflow.search import run_search

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """The demo config shrunk: 6 synthetic speakers, 3 folds, 2 search and 3 train epochs."""
    tmp = tmp_path_factory.mktemp("cfg")
    cfg = yaml.safe_load((ROOT / "examples/demo.yaml").read_text())
    cfg["search"].update(epochs=2, batch_size=16)
    cfg["train"].update(epochs=3, batch_size=16)
    cfg["data"].update(folds=3, cache_dir=str(tmp / "cache"))
    cfg["data"]["demo"].update(n_speakers=6, clips_per_emotion=3, duration=1.0)
    cfg["data"]["features"].update(duration=1.0)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_search_train_evaluate_through_the_cli(tiny_config, tmp_path, capsys):
    run = tmp_path / "search"
    assert main(["search", str(tiny_config), "--out", str(run), "--quiet"]) == 0
    for name in ("genotype.json", "log.jsonl", "alpha_history.json", "checkpoint.pt",
                 "config.yaml", "fold.json", "genotype.png", "alphas.png"):
        assert (run / name).is_file(), name
    assert len(list((run / "genotypes").glob("epoch_*.json"))) == 2
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]

    out = tmp_path / "train"
    assert main(["train", str(tiny_config), "--genotype", str(run / "genotype.json"),
                 "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    data = load_run_data(RunConfig.load(tiny_config), progress=False)
    assert metrics["n_test"] == len(data.fold(0).test)  # every test sample counts
    assert 0.0 <= metrics["ua"] <= 1.0 and 0.0 <= metrics["wa"] <= 1.0
    assert metrics["params"] > 0
    assert sum(map(sum, metrics["confusion"])) == metrics["n_test"]
    assert (out / "confusion.png").stat().st_size > 1000


def test_baseline_training_through_the_cli(tiny_config, tmp_path):
    out = tmp_path / "base"
    assert main(["train", str(tiny_config), "--model", "cnn", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["model"] == "cnn"


def test_resume_is_exact(tiny_config, tmp_path):
    config = RunConfig.load(tiny_config)
    config = config.model_copy(update={"search": config.search.model_copy(update={"epochs": 3})})
    data = load_run_data(config, progress=False)
    full = run_search(config, data, 0, tmp_path / "full", progress=False)
    run_search(config, data, 0, tmp_path / "part", progress=False, stop_after=1)
    resumed = run_search(config, data, 0, tmp_path / "part", resume=True, progress=False)
    assert resumed.genotype == full.genotype
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert full.alpha_history == resumed.alpha_history


def test_existing_run_dir_bad_config_and_foreign_genotype(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "something").write_text("keep me")
    assert main(["search", str(tiny_config), "--out", str(run), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (run / "something").read_text() == "keep me"

    bad = tmp_path / "bad.yaml"
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["search"]["epochs"] = 0
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(bad), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "search.epochs" in capsys.readouterr().err

    foreign = ROOT / "examples/genotypes/darts_v2.json"
    assert main(["train", str(tiny_config), "--genotype", str(foreign), "--out",
                 str(tmp_path / "y"), "--quiet"]) == 2
    assert "another space" in capsys.readouterr().err


def test_scopes_scatter(tiny_config, tmp_path):
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["search"]["epochs"] = 1
    cfg["train"]["epochs"] = 1
    for name, ops in (("lstm_only", ["lstm_1"]), ("rnn_only", ["rnn_1"])):
        cfg["space"]["components"][1]["ops"] = ops + ["skip_connect", "none"]
        (scopes / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["cv", str(tiny_config), "--scopes", str(scopes), "--folds", "0", "1",
                 "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "scopes.json").read_text())
    assert [r["name"] for r in rows] == ["lstm_only", "rnn_only"]
    assert (out / "scopes.png").stat().st_size > 1000


def test_run_data_honours_the_fold_file(tiny_config, tmp_path):
    """``data.fold_file`` decides which speakers each fold tests on."""
    from nasspeech import data as D

    config = RunConfig.load(tiny_config)
    items, _ = D.load_corpus(config.data, progress=False)
    speakers = sorted({item.speaker for item in items})
    chosen = {s: (0 if s in speakers[-2:] else 1 + i % 2) for i, s in enumerate(speakers)}
    fold_file = tmp_path / "folds.json"
    fold_file.write_text(json.dumps(chosen))
    config = config.model_copy(update={"data": config.data.model_copy(
        update={"fold_file": str(fold_file), "group_by": "speaker"})})
    data = load_run_data(config, progress=False)
    test_speakers = {items[i].speaker for i in data.fold(0).test}
    assert test_speakers == set(speakers[-2:])
