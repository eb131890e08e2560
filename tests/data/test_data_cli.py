"""``nasspeech demo-data`` and ``nasspeech features``."""

import csv
import json

import yaml

from nasspeech.cli.main import main


def test_demo_data_then_features_with_cache_and_folds(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    assert main(["demo-data", str(corpus), "--speakers", "2", "--clips-per-emotion", "2",
                 "--duration", "0.5"]) == 0
    assert "16 SYNTHETIC clips" in capsys.readouterr().out
    args = ["features", "--manifest", str(corpus / "manifest.csv"), "--duration", "0.5",
            "--n-mfcc", "16", "--frames", "8", "--cache-dir", str(tmp_path / "cache"),
            "--folds", "2", "--quiet"]
    assert main([*args, "--folds-out", str(tmp_path / "folds.json")]) == 0
    out = capsys.readouterr().out
    assert "16 extracted" in out and "(16, 1, 16, 8)" in out and "fold 1: test speakers" in out
    folds = json.loads((tmp_path / "folds.json").read_text())
    assert sorted(i for f in folds for i in f["test"]) == list(range(16))
    assert main(args) == 0
    assert "16 from cache" in capsys.readouterr().out


def test_features_reads_the_data_section_of_a_run_config(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "space": {}, "data": {
        "corpus": "demo", "folds": 2, "cache_dir": str(tmp_path / "cache"),
        "features": {"duration": 0.3, "n_mfcc": 8, "frames": 4},
        "demo": {"n_speakers": 2, "clips_per_emotion": 1, "duration": 0.3}}}))
    assert main(["features", str(config), "--quiet"]) == 0
    assert "(8, 1, 8, 4)" in capsys.readouterr().out


def test_features_errors_are_clean(tmp_path, capsys):
    assert main(["features", "--manifest", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {corpus: demo, features: {n_mfcc: 0}}\n")
    assert main(["features", str(bad)]) == 2
    assert "data.features.n_mfcc" in capsys.readouterr().err
    assert main(["demo-data", str(tmp_path / "d"), "--speakers", "0"]) == 2


def test_features_balance_gender_on_the_demo_corpus(tmp_path, capsys):
    """The demo manifest has a gender column (odd speakers male): with --balance-gender both
    test folds hold a synthetic woman and a man."""
    corpus = tmp_path / "corpus"
    assert main(["demo-data", str(corpus), "--speakers", "4", "--clips-per-emotion", "1",
                 "--duration", "0.3"]) == 0
    assert main(["features", "--manifest", str(corpus / "manifest.csv"), "--duration", "0.3",
                 "--n-mfcc", "8", "--frames", "4", "--cache-dir", str(tmp_path / "cache"),
                 "--folds", "2", "--balance-gender", "--quiet",
                 "--folds-out", str(tmp_path / "folds.json")]) == 0
    rows = list(csv.DictReader((corpus / "manifest.csv").open()))
    for fold in json.loads((tmp_path / "folds.json").read_text()):
        assert {rows[i]["gender"] for i in fold["test"]} == {"female", "male"}
