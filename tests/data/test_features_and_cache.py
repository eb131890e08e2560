"""Features, the feature cache, and bad audio: each case is an error naming the file or a
counted, reported skip."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nasspeech.data import FeatureConfig, FeatureError, extract_features

SMALL = FeatureConfig(duration=1.0, n_mfcc=20, frames=16, n_fft=512, hop_length=128, n_mels=40)


def tone(path: Path, sr: int = 16000, seconds: float = 1.0, channels: int = 1, amp=0.3) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    y = amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    if channels == 2:
        y = np.stack([y, 0.5 * y], axis=1)
    sf.write(path, y, sr)
    return path


def test_shape_dtype_and_determinism(tmp_path):
    path = tone(tmp_path / "a.wav")
    x1, rep = extract_features([path], SMALL, progress=False)
    x2, _ = extract_features([path], SMALL, progress=False)
    assert x1.shape == (1, 1, 20, 16) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and rep.kept == [0]
    default = FeatureConfig()
    assert (default.n_mfcc, default.frames, default.duration, default.sample_rate) == (
        128, 128, 8.0, 16000)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_any_sample_rate_and_stereo(tmp_path, sr):
    mono = tone(tmp_path / "m.wav", sr=sr)
    stereo = tone(tmp_path / "s.wav", sr=sr, channels=2)
    x, rep = extract_features([mono, stereo], SMALL, progress=False)
    assert x.shape == (2, 1, 20, 16) and not rep.skipped
    assert torch.isfinite(x).all()


def test_bad_audio_is_skipped_with_reasons_or_raises(tmp_path):
    good = tone(tmp_path / "good.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    short = tone(tmp_path / "short.wav", seconds=0.005)  # shorter than one analysis window
    items = [good, corrupt, truncated, empty, silent, short]
    x, rep = extract_features(items, SMALL, progress=False)
    assert rep.kept == [0, 5] and x.shape[0] == 2  # the short clip is zero-padded, kept
    reasons = {Path(p).name: r for _, p, r in rep.skipped}
    assert set(reasons) == {"corrupt.wav", "truncated.wav", "empty.wav", "silent.wav"}
    assert "silent" in reasons["silent.wav"] and "empty" in reasons["empty.wav"]
    assert "skipped" in str(rep) or "4" in str(rep)
    with pytest.raises(FeatureError, match="corrupt.wav"):
        extract_features([good, corrupt], SMALL, progress=False, on_error="raise")


def test_cache_hits_and_invalidates_only_what_changed(tmp_path):
    files = [tone(tmp_path / f"{i}.wav", amp=0.1 + 0.1 * i) for i in range(4)]
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    x1, r1 = extract_features(files, SMALL, cache, progress=False)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    x2, r2 = extract_features(files, SMALL, cache, progress=False)
    warm = time.perf_counter() - t0
    assert (r1.extracted, r1.from_cache) == (4, 0)
    assert (r2.extracted, r2.from_cache) == (0, 4) and torch.equal(x1, x2)
    assert warm < cold
    # one file changes: only it is recomputed
    tone(files[2], amp=0.9)
    os.utime(files[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    x3, r3 = extract_features(files, SMALL, cache, progress=False)
    assert (r3.extracted, r3.from_cache) == (1, 3)
    assert not torch.equal(x3[2], x1[2]) and torch.equal(x3[0], x1[0])
    # a feature parameter changes: everything is recomputed for the new config
    _, r4 = extract_features(files, SMALL.model_copy(update={"n_mfcc": 13}), cache,
                             progress=False)
    assert (r4.extracted, r4.from_cache) == (4, 0)
    assert not list(cache.rglob("*.tmp"))  # atomic writes leave no temp files
