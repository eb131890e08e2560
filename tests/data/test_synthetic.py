"""The synthetic demo corpus: real wav files, deterministic per seed, emotion cues present,
and learnable on held-out synthetic speakers (but not trivially)."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from nasspeech.data import (
    CLASSES,
    CorpusError,
    FeatureConfig,
    extract_features,
    generate_demo_corpus,
    load_manifest,
)


def test_deterministic_wavs_and_manifest(tmp_path):
    a = generate_demo_corpus(tmp_path / "a", n_speakers=2, clips_per_emotion=2, duration=0.5)
    b = generate_demo_corpus(tmp_path / "b", n_speakers=2, clips_per_emotion=2, duration=0.5)
    c = generate_demo_corpus(tmp_path / "c", n_speakers=2, clips_per_emotion=2, duration=0.5,
                             seed=1)
    wavs = sorted(p.relative_to(a.parent) for p in a.parent.glob("**/*.wav"))
    assert len(wavs) == 2 * 4 * 2
    assert all((a.parent / w).read_bytes() == (b.parent / w).read_bytes() for w in wavs)
    assert any((a.parent / w).read_bytes() != (c.parent / w).read_bytes() for w in wavs)
    info = sf.info(a.parent / wavs[0])
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 8000)
    rows = list(csv.DictReader(a.open()))
    assert {r["label"] for r in rows} == set(CLASSES) and len({r["speaker"] for r in rows}) == 2
    assert "SYNTHETIC" in (a.parent / "README.txt").read_text()


def test_emotion_prosody_is_in_the_audio(tmp_path):
    manifest = generate_demo_corpus(tmp_path, n_speakers=2, clips_per_emotion=3, duration=1.0)
    items, _ = load_manifest(manifest)
    for spk in ("spk01", "spk02"):
        rms = {c: np.mean([np.sqrt(np.mean(sf.read(i.path)[0] ** 2)) for i in items
                           if i.speaker == spk and i.label == c]) for c in CLASSES}
        assert rms["anger"] > rms["neutral"] > rms["sadness"]  # louder when angry


def test_learnable_on_held_out_synthetic_speakers(tmp_path):
    manifest = generate_demo_corpus(tmp_path, n_speakers=6, clips_per_emotion=6, duration=1.5)
    items, _ = load_manifest(manifest)
    cfg = FeatureConfig(duration=1.5, n_mfcc=32, frames=32, n_fft=512, hop_length=128, n_mels=40)
    x, rep = extract_features(items, cfg, progress=False)
    assert not rep.skipped
    feats = torch.cat([x.mean(dim=3), x.std(dim=3)], dim=2).flatten(1)  # mean/std pooling
    y = torch.tensor([CLASSES.index(i.label) for i in items])
    speakers = sorted({i.speaker for i in items})
    accuracies = []
    for k in range(3):  # leave two synthetic speakers out, three times
        test = torch.tensor([i.speaker in speakers[2 * k: 2 * k + 2] for i in items])
        mu, sd = feats[~test].mean(0), feats[~test].std(0) + 1e-6
        f = (feats - mu) / sd
        torch.manual_seed(0)
        clf = torch.nn.Linear(f.shape[1], 4)
        opt = torch.optim.Adam(clf.parameters(), lr=0.05, weight_decay=1e-2)
        for _ in range(200):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(clf(f[~test]), y[~test]).backward()
            opt.step()
        accuracies.append(float((clf(f[test]).argmax(1) == y[test]).float().mean()))
    mean = sum(accuracies) / len(accuracies)
    print(f"held-out synthetic speakers: accuracies {accuracies}, mean {mean:.2f}")
    assert mean >= 0.5  # chance is 0.25
    assert mean < 0.95  # speaker variation overlaps the emotion cues: not trivial


def test_interrupted_generation_is_redone_and_users_files_are_never_touched(tmp_path,
                                                                            monkeypatch):
    from nasspeech.data import synthetic

    calls = []
    real = synthetic.synth_clip

    def crash_on_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(synthetic, "synth_clip", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_corpus(tmp_path / "d", n_speakers=1, clips_per_emotion=1, duration=0.2)
    monkeypatch.setattr(synthetic, "synth_clip", real)
    manifest = generate_demo_corpus(tmp_path / "d", n_speakers=1, clips_per_emotion=1,
                                    duration=0.2)  # our own half-written folder: redone
    assert len(list(csv.DictReader(manifest.open()))) == 4
    assert {r["gender"] for r in csv.DictReader(manifest.open())} == {"male"}
    user = tmp_path / "mine"
    user.mkdir()
    (user / "manifest.csv").write_text("my data")
    with pytest.raises(CorpusError, match="not empty and holds no demo corpus"):
        generate_demo_corpus(user, n_speakers=1, clips_per_emotion=1, duration=0.2)
    assert [p.name for p in user.iterdir()] == ["manifest.csv"]
