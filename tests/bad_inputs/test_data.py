"""Bad inputs of the data area (corpora, audio, feature cache, folds, configs, demo-data and
features commands): each one a clear error naming the culprit, never a traceback, no data lost.
Skips that are not errors (a bad clip among good ones) are checked in tests/data."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from nasspeech.data import (
    CorpusError,
    CorpusWarning,
    DataConfig,
    DemoCorpusConfig,
    FeatureConfig,
    FeatureError,
    FoldError,
    Item,
    extract_features,
    load_corpus,
    load_crema_d,
    load_emodb,
    load_folder,
    load_manifest,
    load_ravdess,
    make_folds,
)

from .table import Case, check, cli, params

SMALL = FeatureConfig(duration=0.5, n_mfcc=8, frames=4, n_fft=256, hop_length=128, n_mels=16)


def wav(path: Path, rate: int = 16000, header_rate: int | None = None, peak: float = 0.3,
        subtype: str = "PCM_16") -> Path:
    """A 0.5 s tone; ``header_rate`` overwrites the rate in the header afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(rate // 2) / rate
    sf.write(path, (peak * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate,
             subtype=subtype)
    if header_rate is not None:
        data = bytearray(path.read_bytes())
        data[24:28] = struct.pack("<I", header_rate)
        path.write_bytes(bytes(data))
    return path


def a_file(path: Path, text: str = "not a folder") -> Path:
    path.write_text(text)
    return path


def raise_on(tmp: Path, bad: Path) -> None:
    extract_features([wav(tmp / "good.wav"), bad], SMALL, progress=False, on_error="raise")


def manifest(tmp: Path, rows: str, header: str = "path,label,speaker", name: str = "m.csv",
             encoding: str = "utf-8") -> Path:
    wav(tmp / "a.wav")
    wav(tmp / "b.wav")
    path = tmp / name
    path.write_bytes(f"{header}\n{rows}".encode(encoding))
    return path


def iemocap_one(tmp: Path, utt: str, code: str = "ang") -> Path:
    label = tmp / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    label.parent.mkdir(parents=True)
    label.write_text(f"[1.0 - 2.0]\t{utt}\t{code}\t[2.5, 2.5, 2.5]\n")
    return tmp


def demo_into_existing(tmp: Path, what: str):
    """demo-data onto a user's file / folder: an error, and the user's bytes unchanged."""
    target = tmp / "target"
    if what == "file":
        target.write_text("my notes")
        before = {target: "my notes"}
    else:
        target.mkdir()
        (target / "manifest.csv").write_text("path,label,speaker\nmine.wav,anger,me\n")
        before = {target / "manifest.csv": (target / "manifest.csv").read_text()}
    result = cli("demo-data", target, "--speakers", "1", "--clips-per-emotion", "1")
    assert all(p.read_text() == text for p, text in before.items())
    if what == "folder":
        assert sorted(p.name for p in target.iterdir()) == ["manifest.csv"]
    return result


def features_config(tmp: Path, data: str):
    path = tmp / "run.yaml"
    path.write_text(f"data: {data}\n")
    return cli("features", path, "--quiet")


CASES = [
    # -- item 3: audio that cannot give features (with on_error: raise; skips in tests/data)
    Case("audio-header-rate-0", lambda t: raise_on(t, wav(t / "z.wav", header_rate=0)),
         r"z\.wav: bad sample rate: the file says 0 Hz", FeatureError),
    Case("audio-rate-1-hz", lambda t: raise_on(t, wav(t / "one.wav", header_rate=1)),
         r"one\.wav: bad sample rate: the file says 1 Hz \(accepted: 1000-768000 Hz\)",
         FeatureError),
    Case("audio-float-wav-huge-samples", lambda t: raise_on(
        t, wav(t / "huge.wav", peak=1e30, subtype="FLOAT")),
        r"huge\.wav: non-finite: the features hold NaN or inf \(sample peak 1e\+30\)",
        FeatureError),
    # -- item 4: a cache folder that cannot be used
    Case("cache-dir-is-a-file", lambda t: extract_features(
        [wav(t / "a.wav")], SMALL, a_file(t / "c"), progress=False),
        r"feature cache .*c: ", FeatureError),
    # -- item 5: corpora
    Case("manifest-latin-1", lambda t: load_manifest(manifest(
        t, "a.wav,anger,s1\nb.wav,sadness,Jos\u00e9\n", encoding="latin-1")),
        r"m\.csv:3: the manifest is not UTF-8 text \(byte 0xe9\); re-save it as UTF-8",
        CorpusError),
    Case("iemocap-utterance-ends-in-underscore", lambda t: load_corpus(DataConfig(
        corpus="iemocap", root=str(iemocap_one(t, "Ses01F_impro01_")))),
        r"iemocap .*: no clips left \(1 skipped: 1 bad utterance name\)", CorpusError),
    Case("speaker-regex-invalid-config", lambda t: DataConfig(
        corpus="folder", root=str(t), speaker_regex="(?P<speaker>spk\\d+"),
        r"speaker_regex.*not a valid regular expression: missing \)", ValidationError),
    Case("speaker-regex-invalid-api", lambda t: load_folder(
        wav(t / "anger" / "spk1.wav").parent.parent, "(?P<speaker>["),
        r"speaker_regex '\(\?P<speaker>\[' is not a valid regular expression", CorpusError),
    Case("label-map-target-not-a-class-config", lambda t: DataConfig(
        label_map={"fru": "frustration"}),
        r"label_map\n.*'fru' -> 'frustration' is not a class \(anger, happiness, sadness, "
        r"neutral\) nor 'skip'", ValidationError),
    Case("label-map-target-not-a-class-api", lambda t: load_manifest(
        manifest(t, "a.wav,fru,s1\n"), {"fru": "angr"}),
        r"label_map: 'fru' -> 'angr' is not a class", CorpusError),
    Case("everything-dropped-by-label-map", lambda t: load_corpus(DataConfig(
        corpus="manifest", manifest=str(manifest(t, "a.wav,fru,s1\nb.wav,fru,s2\n")),
        label_map={"fru": "skip"})),
        r"manifest .*m\.csv: no clips left \(2 skipped: 2 dropped by label_map\)", CorpusError),
    Case("manifest-same-clip-two-labels", lambda t: load_manifest(manifest(
        t, "a.wav,anger,s1\na.wav,sadness,s1\n")),
        r"m\.csv:3: a\.wav is labelled 'sadness' but line 2 labels it 'anger'", CorpusError),
    Case("iemocap-same-utterance-two-labels", lambda t: load_corpus(DataConfig(
        corpus="iemocap", root=str(iemocap_two_labels(t)))),
        r"no clips left \(2 skipped: 2 conflicting labels\)", CorpusError),
    Case("manifest-bad-gender", lambda t: load_manifest(manifest(
        t, "a.wav,anger,s1,x\n", header="path,label,speaker,gender")),
        r"m\.csv:2: column gender: gender 'x' is not one of f, female", CorpusError),
    Case("ravdess-root-missing", lambda t: load_ravdess(t / "nowhere"),
         r"RAVDESS root .*nowhere does not exist", CorpusError),
    Case("emodb-without-wav-folder", lambda t: load_emodb(t),
         r"no wav/ folder \(is this the Emo-DB root\?\)", CorpusError),
    Case("crema-d-demographics-without-sex", lambda t: load_crema_d(crema_d_bad_demographics(t)),
        r"VideoDemographics\.csv: missing column\(s\) ActorID, Sex", CorpusError),
    # -- folds
    Case("balance-gender-without-genders", lambda t: make_folds(
        [Item(f"/x/{s}.wav", "anger", s) for s in ("a", "b", "c")], 2, balance_gender=True),
        r"balance_gender: speaker 'a' has no gender", FoldError),
    # -- item 9 (and ranges): numbers in the config models
    Case("features-duration-inf", lambda t: FeatureConfig(duration=float("inf")),
         r"duration\n\s+Input should be a finite number", ValidationError),
    Case("features-silence-peak-nan", lambda t: FeatureConfig(silence_peak=float("nan")),
         r"silence_peak\n\s+Input should be a finite number", ValidationError),
    Case("features-sample-rate-10", lambda t: FeatureConfig(sample_rate=10),
         r"sample_rate\n\s+Input should be greater than or equal to 1000", ValidationError),
    Case("data-search-fraction-nan", lambda t: DataConfig(search_fraction=float("nan")),
         r"search_fraction\n\s+Input should be a finite number", ValidationError),
    Case("demo-duration-inf", lambda t: DemoCorpusConfig(duration=float("inf")),
         r"duration\n\s+Input should be a finite number", ValidationError),
    # -- item 6 and the features command
    Case("cli-demo-data-onto-a-file", lambda t: demo_into_existing(t, "file"),
         r"nasspeech demo-data: error: demo corpus folder .*target exists and is not a folder"),
    Case("cli-demo-data-into-a-users-folder", lambda t: demo_into_existing(t, "folder"),
         r"target is not empty and holds no demo corpus \(no stamp\.json\)"),
    Case("cli-demo-data-sample-rate-10", lambda t: cli("demo-data", t / "d", "--sample-rate",
                                                        "10"),
         r"demo-data: error: --sample-rate: Input should be greater than or equal to 8000 "
         r"\(got 10\)"),
    Case("cli-demo-data-duration-nan", lambda t: cli("demo-data", t / "d", "--duration", "nan"),
         r"--duration: Input should be a finite number"),
    Case("cli-features-duration-inf", lambda t: features_config(
        t, "{corpus: demo, features: {duration: .inf}}"),
        r"data\.features\.duration: Input should be a finite number"),
    Case("cli-features-label-map-typo", lambda t: features_config(
        t, "{corpus: iemocap, root: /x, label_map: {fru: angre}}"),
        r"data\.label_map: label_map: 'fru' -> 'angre' is not a class"),
    Case("cli-features-latin-1-manifest", lambda t: cli(
        "features", "--manifest", manifest(t, "a.wav,anger,Jos\u00e9\n", encoding="latin-1"),
        "--quiet", "--cache-dir", t / "c"),
        r"features: error: .*m\.csv:2: the manifest is not UTF-8 text"),
]


def crema_d_bad_demographics(tmp: Path) -> Path:
    wav(tmp / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    a_file(tmp / "VideoDemographics.csv", "ActorID,Age\n1001,51\n")
    return tmp


def iemocap_two_labels(tmp: Path) -> Path:
    root = iemocap_one(tmp, "Ses01F_impro01_F000", "ang")
    (root / "Session1/dialog/EmoEvaluation/again.txt").write_text(
        "[1.0 - 2.0]\tSes01F_impro01_F000\tsad\t[2.5, 2.5, 2.5]\n")
    wav(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    return root


@params(CASES)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_no_session_column_reports_no_sessions(tmp_path: Path) -> None:
    """Item 2: a manifest without ``session`` printed "0 sessions"."""
    path = manifest(tmp_path, "a.wav,anger,s1\nb.wav,sadness,s2\n")
    result = cli("features", "--manifest", path, "--quiet", "--cache-dir", tmp_path / "c",
                 "--folds", "2")
    assert result.code == 0, result.stderr
    summary = result.stdout.splitlines()[0]
    assert "2 clips, 2 speakers [" in summary and "session" not in summary.split("):")[1]


def test_one_class_corpus_is_a_warning(tmp_path: Path) -> None:
    path = manifest(tmp_path, "a.wav,anger,s1\nb.wav,angry,s2\n")
    with pytest.warns(CorpusWarning, match=r"m\.csv: only one class \(anger\)"):
        load_corpus(DataConfig(corpus="manifest", manifest=str(path)))
    result = cli("features", "--manifest", path, "--quiet", "--cache-dir", tmp_path / "c",
                 "--folds", "2")
    assert "warning: only one class (anger)" in result.stdout
