"""Corpus loaders on fixture trees in each corpus's documented layout, the manifest's bad rows,
label maps, and the load_corpus dispatcher (demo corpus included)."""

from pathlib import Path

import pytest

from nasspeech.data import (
    CorpusError,
    CorpusWarning,
    DataConfig,
    DemoCorpusConfig,
    load_corpus,
    load_crema_d,
    load_emodb,
    load_folder,
    load_iemocap,
    load_manifest,
    load_msp_improv,
    load_msp_podcast,
    load_ravdess,
)

IEMOCAP = {  # dialog -> (utterance, code)
    "Ses01F_impro01": [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M001", "ang"),
                       ("Ses01F_impro01_F002", "fru"), ("Ses01F_impro01_M003", "exc")],
    "Ses01F_script01_1": [("Ses01F_script01_1_F000", "sad")],
}


def iemocap_tree(root: Path, tone) -> Path:
    for session, dialogs in (("Session1", IEMOCAP), ("Session2", {
            "Ses02M_impro03": [("Ses02M_impro03_F000", "hap"), ("Ses02M_impro03_M001", "sad")]})):
        for dialog, utts in dialogs.items():
            text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "".join(
                f"[6.2901 - 8.2357]\t{u}\t{c}\t[2.5000, 2.5000, 2.5000]\n"
                f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n" for u, c in utts)
            label_file = root / session / "dialog/EmoEvaluation" / f"{dialog}.txt"
            label_file.parent.mkdir(parents=True, exist_ok=True)
            label_file.write_text(text)
            for u, _ in utts:
                tone(root / session / "sentences/wav" / dialog / f"{u}.wav", seconds=0.1)
    (root / "Session1/dialog/EmoEvaluation/Categorical").mkdir()  # sub-folders are not read
    return root


def test_iemocap_layout(tmp_path, tone):
    root = iemocap_tree(tmp_path, tone)
    items, report = load_iemocap(root)
    assert [(i.label, i.speaker, i.session) for i in items] == [
        ("neutral", "Ses01F", "Ses01"), ("anger", "Ses01M", "Ses01"),
        ("happiness", "Ses02F", "Ses02"), ("sadness", "Ses02M", "Ses02")]
    assert items[0].path.endswith("Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    assert items[0].meta["utterance"] == "Ses01F_impro01_F000"
    reasons = sorted(r for _, r in report.skipped)  # counted, never silently lost
    assert reasons == ["scripted: improvised_only is set", "unused label: exc",
                       "unused label: fru"]
    merged, _ = load_iemocap(root, merge_excitement=True)
    assert [i.label for i in merged if i.meta["raw_label"] == "exc"] == ["happiness"]
    mapped, _ = load_iemocap(root, improvised_only=False, label_map={"fru": "anger"})
    assert sorted(i.meta["raw_label"] for i in mapped) == ["ang", "fru", "hap", "neu", "sad",
                                                          "sad"]
    (root / "Session2/sentences/wav/Ses02M_impro03/Ses02M_impro03_M001.wav").unlink()
    _, report = load_iemocap(root)
    assert any(r.startswith("missing file:") and "M001" in r for _, r in report.skipped)
    with pytest.raises(CorpusError, match="Session1..Session5"):
        load_iemocap(tmp_path / "nothing")


def test_msp_improv_layout(tmp_path, tone):
    (tmp_path / "Evalution.txt").write_text(
        "UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:4.0000; V:2.0000; D:3.0000 ; N:5.0000;\n"
        "rater01; Angry; Angry,Frustrated; A:4.00; V:2.00; D:3.00 ; N:5.00;\n\n"
        "UTD-IMPROV-S03H-M01-R-MF02.avi; H; A:3.0000; V:4.0000; D:3.0000 ; N:5.0000;\n\n"
        "UTD-IMPROV-S02N-M06-T-MF03.avi; N; A:2.0000; V:3.0000; D:3.0000 ; N:5.0000;\n\n"
        "UTD-IMPROV-S02B-M06-S-MF03.avi; O; A:2.0000; V:3.0000; D:3.0000 ; N:5.0000;\n")
    for name, where in (("S01A-F01-P-FM01", "session1/S01A/P"),
                        ("S03H-M01-R-MF02", "session1/S03H/R"),
                        ("S02N-M06-T-MF03", "session6/S02N/T"),
                        ("S02B-M06-S-MF03", "session6/S02B/S")):
        tone(tmp_path / where / f"MSP-IMPROV-{name}.wav", seconds=0.1)
    items, report = load_msp_improv(tmp_path)
    assert [(i.label, i.speaker, i.session) for i in items] == [
        ("anger", "F01", "01"), ("happiness", "M01", "01"), ("neutral", "M06", "06")]
    assert items[0].meta["sentence"] == "01" and items[2].meta["type"] == "T"
    assert report.skipped == [("MSP-IMPROV-S02B-M06-S-MF03", "unused label: O")]
    (tmp_path / "Evalution.txt").rename(tmp_path / "Evaluation.txt")  # either spelling
    assert len(load_msp_improv(tmp_path)[0]) == 3
    with pytest.raises(CorpusError, match="MSP-IMPROV label file"):
        load_msp_improv(tmp_path / "session1")


def test_msp_podcast_layout(tmp_path, tone):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels/labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,H,4.2,5.0,4.0,127,Female,Train\n"
        "MSP-PODCAST_0001_0009.wav,C,4.2,5.0,4.0,127,Female,Train\n"
        "MSP-PODCAST_0002_0001.wav,S,2.0,2.0,3.0,Unknown,Male,Test1\n"
        "MSP-PODCAST_0003_0004.wav,A,6.0,2.0,6.0,930,Male,Development\n"
        "MSP-PODCAST_0003_0005.wav,N,4.0,4.0,4.0,930,Male,Test1\n")
    for name in ("0001_0008", "0001_0009", "0002_0001", "0003_0004"):
        tone(tmp_path / "Audios" / f"MSP-PODCAST_{name}.wav", seconds=0.1)
    items, report = load_msp_podcast(tmp_path)
    assert [(i.label, i.speaker, i.meta["split"]) for i in items] == [
        ("happiness", "127", "Train"), ("anger", "930", "Development")]
    assert sorted(r.split(":")[0] for _, r in report.skipped) == [
        "missing file", "unknown speaker", "unused label"]
    train_only, report = load_msp_podcast(tmp_path, splits=["Train"])
    assert [i.speaker for i in train_only] == ["127"]
    assert "other split" in str(report)
    with pytest.raises(CorpusError, match="labels_consensus.csv"):
        load_msp_podcast(tmp_path / "Audios")


def test_folder_layout(tmp_path, tone):
    tone(tmp_path / "angry" / "spk01_s1_take1.wav", seconds=0.1)
    tone(tmp_path / "neutral" / "spk02_s1_take1.wav", seconds=0.1)
    tone(tmp_path / "calm" / "spk02_s1_take2.wav", seconds=0.1)
    regex = r"(?P<speaker>spk\d+)_(?P<session>s\d)_"
    with pytest.raises(CorpusError, match="calm.*unknown label folder"):
        load_folder(tmp_path, regex)
    items, report = load_folder(tmp_path, regex, label_map={"calm": "neutral"})
    assert sorted((i.label, i.speaker, i.session) for i in items) == [
        ("anger", "spk01", "s1"), ("neutral", "spk02", "s1"), ("neutral", "spk02", "s1")]
    _, report = load_folder(tmp_path, regex, on_unknown_label="skip")
    assert len(report.skipped) == 1 and "calm" in report.skipped[0][1]
    with pytest.raises(CorpusError, match="named group"):
        load_folder(tmp_path, r"spk\d+")
    tone(tmp_path / "angry" / "nobody.wav", seconds=0.1)
    with pytest.raises(CorpusError, match="nobody.wav.*does not match"):
        load_folder(tmp_path, regex, label_map={"calm": "neutral"})


def write_manifest(tmp_path: Path, rows: list[str], name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text("path,label,speaker,session\n" + "\n".join(rows) + "\n")
    return path


def test_manifest_bad_rows_name_the_row(tmp_path, tone):
    tone(tmp_path / "a.wav", seconds=0.1)
    tone(tmp_path / "b.wav", seconds=0.1)
    items, rep = load_manifest(write_manifest(tmp_path, [
        "a.wav,anger,s1,x", "b.wav,Neutral,s2,x", "a.wav,anger,s1,x"]))
    assert [(i.label, i.speaker) for i in items] == [("anger", "s1"), ("neutral", "s2")]
    assert rep.duplicates == 1 and rep.skipped == [(f"{tmp_path / 'm.csv'}:4",
                                                    "duplicate row: same as line 2")]
    with pytest.raises(CorpusError, match=r"m.csv:3: unknown label 'bored'"):
        load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,x", "b.wav,bored,s2,x"]))
    with pytest.raises(CorpusError, match=r"m.csv:2: audio file .*gone.wav does not exist"):
        load_manifest(write_manifest(tmp_path, ["gone.wav,anger,s1,x"]))
    with pytest.raises(CorpusError, match=r"m.csv:3: a.wav is labelled 'sadness' but line 2"):
        load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,x", "a.wav,sadness,s1,x"]))
    with pytest.raises(CorpusError, match=r"m.csv:3: a.wav has speaker 's9'"):
        load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,x", "a.wav,anger,s9,x"]))
    with pytest.raises(CorpusError, match=r"missing column\(s\) \['speaker'\]"):
        (tmp_path / "cols.csv").write_text("path,label\na.wav,anger\n")
        load_manifest(tmp_path / "cols.csv")
    items, rep = load_manifest(write_manifest(tmp_path, [
        "gone.wav,anger,s1,x", "a.wav,anger,s1,x", "b.wav,bored,s2,x"]),
        on_missing_file="skip", on_unknown_label="skip")
    assert len(items) == 1 and [r.split(":")[0] for _, r in rep.skipped] == [
        "missing file", "unknown label"]
    assert "2 skipped" in str(rep)


def test_manifest_label_map_and_root(tmp_path, tone):
    tone(tmp_path / "audio" / "a.wav", seconds=0.1)
    tone(tmp_path / "audio" / "b.wav", seconds=0.1)
    manifest = write_manifest(tmp_path, ["a.wav,frustrated,s1,", "b.wav,fear,s2,"])
    items, rep = load_manifest(manifest, {"Frustrated": "anger", "fear": "skip"},
                               root=tmp_path / "audio")
    assert [(i.label, i.session) for i in items] == [("anger", "")]
    assert rep.skipped[0][1] == "dropped by label_map: 'fear'"


def test_load_corpus_dispatch_and_demo(tmp_path, tone):
    with pytest.raises(CorpusError, match="needs data.root"):
        load_corpus(DataConfig(corpus="iemocap"))
    iemocap_tree(tmp_path / "iemocap", tone)
    items, _ = load_corpus(DataConfig(corpus="iemocap", root=str(tmp_path / "iemocap"),
                                      merge_excitement=True))
    assert len(items) == 5
    assert DataConfig(corpus="iemocap").resolved_group_by() == "session"
    assert DataConfig(corpus="msp_podcast").resolved_group_by() == "speaker"
    demo = DataConfig(corpus="demo", cache_dir=str(tmp_path / "cache"),
                      demo=DemoCorpusConfig(n_speakers=2, clips_per_emotion=1, duration=0.3))
    items, report = load_corpus(demo)
    assert len(items) == 8 and report.corpus == "demo" and items[0].meta["corpus"] == "demo"
    first = Path(items[0].path)
    assert first.is_relative_to((tmp_path / "cache" / "demo-corpus").resolve())
    stamp = first.stat().st_mtime_ns
    load_corpus(demo)  # complete: nothing is rewritten
    assert first.stat().st_mtime_ns == stamp
    Path(items[3].path).unlink()  # missing: regenerated
    assert len(load_corpus(demo)[0]) == 8 and Path(items[3].path).is_file()


def test_report_without_sessions_says_nothing_about_sessions(tmp_path, tone):
    tone(tmp_path / "a.wav", seconds=0.1)
    tone(tmp_path / "b.wav", seconds=0.1)
    path = tmp_path / "nosess.csv"
    path.write_text("path,label,speaker\na.wav,anger,s1\nb.wav,sadness,s2\n")
    _, report = load_manifest(path)
    counts = str(report).split("):", 1)[1]
    assert report.n_sessions == 0 and "session" not in counts  # was "0 sessions"
    assert counts.startswith(" 2 clips, 2 speakers [")
    _, report = load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,x", "b.wav,sad,s2,y"]))
    assert "2 speakers, 2 sessions [" in str(report)


def test_manifest_gender_column_and_label_map_aliases(tmp_path, tone):
    tone(tmp_path / "a.wav", seconds=0.1)
    tone(tmp_path / "b.wav", seconds=0.1)
    path = tmp_path / "g.csv"
    path.write_text("path,label,speaker,gender\na.wav,fru,s1,F\nb.wav,sad,s2,Male\n")
    items, _ = load_manifest(path, {"fru": "Angry"})  # a value may be any class spelling
    assert [(i.label, i.gender) for i in items] == [("anger", "female"), ("sadness", "male")]
    path.write_text("path,label,speaker,gender\na.wav,sad,s1,\n")
    assert load_manifest(path)[0][0].gender == ""


def test_missing_classes_are_reported(tmp_path, tone):
    """(One class only: tests/bad_inputs/test_data.py.)"""
    tone(tmp_path / "a.wav", seconds=0.1)
    tone(tmp_path / "b.wav", seconds=0.1)
    _, report = load_manifest(write_manifest(tmp_path, ["a.wav,anger,s1,", "b.wav,sad,s2,"]))
    assert report.warnings == ["no clips of happiness, neutral"]


def test_released_corpora_keep_a_clip_once(tmp_path, tone):
    """The same utterance twice with one label: a counted duplicate; with two labels: both
    entries skipped, naming where each label came from (was: both kept)."""
    root = iemocap_tree(tmp_path, tone)
    extra = root / "Session1/dialog/EmoEvaluation/Ses01F_impro01_again.txt"
    extra.write_text("[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n"
                     "[1.0 - 2.0]\tSes01F_impro01_M001\tsad\t[2.5, 2.5, 2.5]\n")
    items, report = load_iemocap(root)
    assert [i.meta["utterance"] for i in items] == [
        "Ses01F_impro01_F000", "Ses02M_impro03_F000", "Ses02M_impro03_M001"]
    assert report.duplicates == 1
    conflicts = [r for _, r in report.skipped if r.startswith("conflicting labels")]
    assert len(conflicts) == 2 and "anger (Ses01F_impro01.txt:Ses01F_impro01_M001)" in conflicts[0]
    assert "sadness (Ses01F_impro01_again.txt:Ses01F_impro01_M001)" in conflicts[0]
    assert {i.gender for i in items} == {"female", "male"}


def test_msp_podcast_conflicting_rows_and_gender(tmp_path, tone):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels/labels_consensus.csv").write_text(
        "FileName,EmoClass,SpkrID,Gender,Split_Set\n"
        "a.wav,H,1,Female,Train\na.wav,S,1,Female,Train\nb.wav,N,2,Male,Train\n"
        "c.wav,A,3,Unknown,Train\n")
    for name in "abc":
        tone(tmp_path / "Audios" / f"{name}.wav", seconds=0.1)
    items, report = load_msp_podcast(tmp_path)
    assert [(i.speaker, i.gender) for i in items] == [("2", "male"), ("3", "")]
    assert sum(r.startswith("conflicting labels") for _, r in report.skipped) == 2


RAVDESS = ["03-01-01-01-01-01-01", "03-01-05-02-01-01-01", "03-01-02-01-01-01-01",
           "03-02-05-01-01-01-01", "03-01-07-01-02-01-02", "03-01-03-01-02-02-02",
           "03-01-04-02-02-02-02"]


def ravdess_tree(root: Path, tone) -> Path:
    for name in RAVDESS:
        actor = name[-2:]
        tone(root / "Audio_Speech_Actors_01-24" / f"Actor_{actor}" / f"{name}.wav", seconds=0.1)
    (root / "Audio_Speech_Actors_01-24" / "Actor_01" / "notes.wav").write_bytes(b"")
    return root


def test_ravdess_layout(tmp_path, tone):
    root = ravdess_tree(tmp_path, tone)
    items, report = load_ravdess(root)
    assert [(i.label, i.speaker, i.gender, i.meta["intensity"]) for i in items] == [
        ("neutral", "actor01", "male", "normal"), ("anger", "actor01", "male", "strong"),
        ("happiness", "actor02", "female", "normal"),
        ("sadness", "actor02", "female", "strong")]
    assert sorted(r.split(":")[0] for _, r in report.skipped) == [
        "bad name", "not speech", "unused label", "unused label"]
    mapped, _ = load_ravdess(root, label_map={"calm": "neutral", "07": "anger"})
    assert sorted(i.meta["raw_label"] for i in mapped) == [
        "angry", "calm", "disgust", "happy", "neutral", "sad"]
    normal, report = load_ravdess(root, strong_intensity=False)
    assert [i.meta["intensity"] for i in normal] == ["normal", "normal"]
    assert sum(r.startswith("strong intensity") for _, r in report.skipped) == 2
    with pytest.warns(CorpusWarning, match="no clips of anger, sadness"):
        via_config, _ = load_corpus(DataConfig(corpus="ravdess", root=str(root),
                                               strong_intensity=False))
    assert [i.path for i in via_config] == [i.path for i in normal]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no RAVDESS files"):
        load_ravdess(tmp_path / "empty")


def test_emodb_layout(tmp_path, tone):
    for name in ("03a01Wa", "08a02Fb", "10b03Tc", "16a04Nd", "09a05Le", "11b01Ab", "x.wav"):
        tone(tmp_path / "wav" / f"{name}.wav", seconds=0.1)
    items, report = load_emodb(tmp_path)
    assert [(i.label, i.speaker, i.gender) for i in items] == [
        ("anger", "03", "male"), ("happiness", "08", "female"), ("sadness", "10", "male"),
        ("neutral", "16", "female")]
    assert sorted(r for _, r in report.skipped) == [
        "bad name: expected SSTTTEv, e.g. 03a01Wa", "unused label: boredom",
        "unused label: fear"]
    mapped, _ = load_corpus(DataConfig(corpus="emodb", root=str(tmp_path),
                                       label_map={"boredom": "neutral", "A": "skip"}))
    assert [i.meta["raw_label"] for i in mapped] == ["W", "F", "L", "T", "N"]
    with pytest.raises(CorpusError, match="no wav/ folder"):
        load_emodb(tmp_path / "wav")


def test_crema_d_layout(tmp_path, tone):
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO", "1002_DFA_NEU_XX",
                 "1091_MTI_DIS_MD", "1001_DFA_ANG"):
        tone(tmp_path / "AudioWAV" / f"{name}.wav", seconds=0.1)
    items, report = load_crema_d(tmp_path)
    assert [(i.label, i.speaker, i.meta["intensity"], i.gender) for i in items] == [
        ("anger", "1001", "unspecified", ""), ("happiness", "1001", "high", ""),
        ("neutral", "1002", "unspecified", ""), ("sadness", "1002", "low", "")]
    assert sorted(r.split(":")[0] for _, r in report.skipped) == ["bad name", "unused label"]
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n1091,29,Female,Asian,Not Hispanic\n")
    items, report = load_crema_d(tmp_path, label_map={"DIS": "anger"}, strong_intensity=False)
    assert [(i.speaker, i.gender) for i in items] == [
        ("1001", "male"), ("1002", "female"), ("1002", "female"), ("1091", "female")]
    assert any(r.startswith("strong intensity") for _, r in report.skipped)
    assert load_corpus(DataConfig(corpus="crema_d", root=str(tmp_path)))[0][0].speaker == "1001"
