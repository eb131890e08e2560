"""Corpus loaders on fixture trees in each corpus's layout, manifest errors, folds, and the
synthetic demo corpus (deterministic and learnable)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nasspeech.data import (
    CLASSES,
    CorpusError,
    FeatureConfig,
    FoldError,
    extract_features,
    generate_demo_corpus,
    load_iemocap,
    load_manifest,
    make_folds,
)
from nasspeech.data.items import Item


def wav(path: Path, seconds: float = 0.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 5.0), 16000)
    return path


def test_iemocap_layout(tmp_path):
    lines = {"Ses01F_impro01": [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M001", "ang"),
                                ("Ses01F_impro01_F002", "fru")],
             "Ses01F_script01_1": [("Ses01F_script01_1_F000", "sad")]}
    for dialog, utts in lines.items():
        text = "% header\n\n" + "".join(
            f"[1.0000 - 2.0000]\t{u}\t{c}\t[2.5000, 2.5000, 2.5000]\n" for u, c in utts)
        f = tmp_path / "Session1/dialog/EmoEvaluation" / f"{dialog}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        for u, _ in utts:
            wav(tmp_path / "Session1/sentences/wav" / dialog / f"{u}.wav")
    items, report = load_iemocap(tmp_path)
    assert [(i.label, i.speaker, i.session) for i in items] == [
        ("neutral", "Ses01F", "Ses01"), ("anger", "Ses01M", "Ses01")]
    assert report.skipped  # 'fru' and the scripted one are counted, not silently lost
    with pytest.raises(CorpusError, match="Session1..Session5"):
        load_iemocap(tmp_path / "nothing")


def write_manifest(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "m.csv"
    path.write_text("path,label,speaker,session\n" + "\n".join(rows) + "\n")
    return path


def test_manifest_errors_name_the_row(tmp_path):
    wav(tmp_path / "a.wav")
    wav(tmp_path / "b.wav")
    items, rep = load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,x", "b.wav,neutral,s2,x",
                                                         "a.wav,anger,s1,x"]))
    assert len(items) == 2 and rep.skipped  # the duplicate row is dropped and counted
    with pytest.raises(CorpusError, match=r"m.csv:3.*unknown label 'bored'"):
        load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,x", "b.wav,bored,s2,x"]))
    with pytest.raises(CorpusError, match=r"m.csv:2.*does not exist"):
        load_manifest(write_manifest(tmp_path, ["gone.wav,anger,s1,x"]))
    items, rep = load_manifest(write_manifest(tmp_path, ["gone.wav,anger,s1,x", "a.wav,anger,s1,x"]),
                               on_missing_file="skip")
    assert len(items) == 1 and len(rep.skipped) == 1


def fake_items(n_speakers: int = 6, per_class: int = 5) -> list[Item]:
    return [Item(f"/x/{s}_{c}_{k}.wav", c, f"spk{s}", f"ses{s // 2}")
            for s in range(n_speakers) for c in CLASSES for k in range(per_class)]


def test_folds_are_speaker_independent_and_cover_everything():
    items = fake_items()
    folds = make_folds(items, n_folds=3, group_by="speaker", search_fraction=0.7, seed=1)
    assert folds == make_folds(items, n_folds=3, group_by="speaker", search_fraction=0.7, seed=1)
    tested = []
    for f in folds:
        parts = [set(f.test), set(f.search), set(f.train)]
        assert set.union(*parts) == set(range(len(items)))
        assert sum(map(len, parts)) == len(items)  # every item in exactly one part
        test_spk = {items[i].speaker for i in f.test}
        assert not test_spk & {items[i].speaker for i in f.search + f.train}
        assert abs(len(f.search) / (len(f.search) + len(f.train)) - 0.7) < 0.05
        for c in CLASSES:  # stratified
            s = sum(items[i].label == c for i in f.search)
            t = sum(items[i].label == c for i in f.train)
            assert abs(s / (s + t) - 0.7) < 0.1
        tested += f.test
    assert sorted(tested) == list(range(len(items)))
    sessions = make_folds(items, n_folds=3, group_by="session")
    for f in sessions:
        assert not {items[i].session for i in f.test} & {items[i].session for i in f.train}
    with pytest.raises(FoldError):
        make_folds(fake_items(n_speakers=2), n_folds=5)


def test_user_fold_file_with_a_speaker_in_two_folds_is_an_error(tmp_path):
    items = fake_items(n_speakers=4)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"spk0": 0, "spk1": 0, "spk2": 1, "spk3": 1}))
    folds = make_folds(items, n_folds=2, fold_file=good)
    assert {items[i].speaker for i in folds[0].test} == {"spk0", "spk1"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"0": ["spk0", "spk1"], "1": ["spk1", "spk2", "spk3"]}')
    with pytest.raises(FoldError, match="spk1"):
        make_folds(items, n_folds=2, fold_file=bad)


def test_synthetic_corpus_is_deterministic_and_learnable(tmp_path):
    a = generate_demo_corpus(tmp_path / "a", n_speakers=6, clips_per_emotion=6, duration=1.5)
    b = generate_demo_corpus(tmp_path / "b", n_speakers=6, clips_per_emotion=6, duration=1.5)
    wavs_a = sorted(a.parent.glob("**/*.wav"))
    assert len(wavs_a) == 6 * 4 * 6
    assert all(x.read_bytes() == (b.parent / x.relative_to(a.parent)).read_bytes()
               for x in wavs_a[:10])
    items, _ = load_manifest(a)
    cfg = FeatureConfig(duration=1.5, n_mfcc=32, frames=32, n_fft=512, hop_length=128, n_mels=40)
    x, rep = extract_features(items, cfg, progress=False)
    assert not rep.skipped
    feats = torch.cat([x.mean(dim=3), x.std(dim=3)], dim=2).flatten(1)  # per-clip pooling
    y = torch.tensor([CLASSES.index(i.label) for i in items])
    speakers = sorted({i.speaker for i in items})
    test = torch.tensor([i.speaker in speakers[-2:] for i in items])
    mu, sd = feats[~test].mean(0), feats[~test].std(0) + 1e-6
    f = (feats - mu) / sd
    torch.manual_seed(0)
    clf = torch.nn.Linear(f.shape[1], 4)
    opt = torch.optim.Adam(clf.parameters(), lr=0.05, weight_decay=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(f[~test]), y[~test]).backward()
        opt.step()
    acc = float((clf(f[test]).argmax(1) == y[test]).float().mean())
    print(f"held-out synthetic speakers: accuracy {acc:.2f}")
    assert acc >= 0.5  # chance is 0.25


def test_msp_improv_layout(tmp_path):
    from nasspeech.data import load_msp_improv

    (tmp_path / "Evalution.txt").write_text(
        "UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:4.0; V:2.0; D:3.0; N:5;\n"
        "UTD-IMPROV-S02B-M03-R-MF02.avi; N; A:2.0; V:3.0; D:3.0; N:5;\n"
        "UTD-IMPROV-S02B-M03-R-MF03.avi; O; A:2.0; V:3.0; D:3.0; N:5;\n")
    wav(tmp_path / "Audio/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav")
    wav(tmp_path / "Audio/session2/S02B/R/MSP-IMPROV-S02B-M03-R-MF02.wav")
    items, report = load_msp_improv(tmp_path)
    assert [(i.label, i.speaker, i.session) for i in items] == [
        ("anger", "F01", "01"), ("neutral", "M03", "02")]
    assert len(report.skipped) == 1  # the 'O' label, counted


def test_msp_podcast_layout(tmp_path):
    from nasspeech.data import load_msp_podcast

    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels/labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,H,4.2,5.0,4.0,127,Female,Train\n"
        "MSP-PODCAST_0001_0009.wav,C,4.2,5.0,4.0,127,Female,Train\n"
        "MSP-PODCAST_0002_0001.wav,S,2.0,2.0,3.0,Unknown,Male,Test1\n")
    for name in ("MSP-PODCAST_0001_0008.wav", "MSP-PODCAST_0001_0009.wav",
                 "MSP-PODCAST_0002_0001.wav"):
        wav(tmp_path / "Audios" / name)
    items, report = load_msp_podcast(tmp_path)
    assert [(i.label, i.speaker, i.meta["split"]) for i in items] == [("happiness", "127", "Train")]
    assert len(report.skipped) == 2  # class C and the unknown speaker, counted


def test_folder_layout(tmp_path):
    from nasspeech.data import load_folder

    wav(tmp_path / "anger" / "spk01_take1.wav")
    wav(tmp_path / "neutral" / "spk02_take1.wav")
    items, _ = load_folder(tmp_path, r"(?P<speaker>spk\d+)_")
    assert sorted((i.label, i.speaker) for i in items) == [("anger", "spk01"),
                                                          ("neutral", "spk02")]
