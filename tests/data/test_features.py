"""Features of one clip: shape, defaults, any rate / channel count, and bad audio (each a
counted, reported skip with its reason, or an error naming the file)."""

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nasspeech.data import (
    FeatureConfig,
    FeatureError,
    compute_features,
    extract_features,
)
from nasspeech.data.features import pool_frames


def test_shape_dtype_defaults_and_determinism(tmp_path, tone, small):
    path = tone(tmp_path / "a.wav")
    x1, rep = extract_features([path], small, progress=False)
    x2, _ = extract_features([str(path)], small, progress=False)
    assert x1.shape == (1, 1, 20, 16) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and rep.kept == [0] and rep.extracted == 1
    default = FeatureConfig()
    assert (default.n_mfcc, default.frames, default.duration, default.sample_rate,
            default.kind, default.normalise) == (128, 128, 8.0, 16000, "mfcc", "per_clip")
    y = sf.read(path, dtype="float32")[0]
    full = compute_features(y, FeatureConfig(duration=1.0))  # the paper's 128 x 128
    assert full.shape == (128, 128) and full.dtype == np.float32
    assert abs(full.mean()) < 1e-4 and abs(full.std() - 1) < 1e-3  # per-clip normalisation


def test_logmel_and_unnormalised(tmp_path, tone, small):
    path = tone(tmp_path / "a.wav")
    cfg = small.model_copy(update={"kind": "logmel", "normalise": "none"})
    x, _ = extract_features([path], cfg, progress=False)
    assert x.shape == (1, 1, 20, 16) and x.max() > 1  # raw dB values
    assert cfg.key() != small.key()


def test_max_pool_along_time():
    m = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert pool_frames(m, 3).tolist() == [[1, 3, 5], [7, 9, 11]]
    assert pool_frames(m, 8).shape == (2, 8)  # fewer columns than frames: padded


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_any_sample_rate_and_stereo(tmp_path, tone, small, sr):
    ref = tone(tmp_path / "ref.wav", sr=16000)
    mono = tone(tmp_path / "m.wav", sr=sr)
    stereo = tone(tmp_path / "s.wav", sr=sr, channels=2)
    x, rep = extract_features([ref, mono, stereo], small, progress=False)
    assert x.shape == (3, 1, 20, 16) and not rep.skipped
    assert torch.isfinite(x).all()
    # resampled to 16 kHz, the same tone gives nearly the same features
    assert torch.corrcoef(torch.stack([x[0].flatten(), x[1].flatten()]))[0, 1] > 0.9


def test_bad_audio_is_skipped_with_reasons(tmp_path, tone, small, capsys):
    good = tone(tmp_path / "good.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    header_only = tmp_path / "header_cut.wav"
    header_only.write_bytes(good.read_bytes()[:30])
    half = tmp_path / "half.wav"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    zero_length = tmp_path / "zero_length.wav"
    zero_length.write_bytes(b"")
    no_samples = tmp_path / "no_samples.wav"
    sf.write(no_samples, np.zeros(0), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    short = tone(tmp_path / "short.wav", seconds=0.005)  # 80 samples < one 512-sample window
    missing = tmp_path / "missing.wav"
    items = [good, corrupt, header_only, half, zero_length, no_samples, silent, short, missing]
    x, rep = extract_features(items, small, progress=False)
    assert rep.kept == [0, 7] and x.shape[0] == 2  # the short clip is zero-padded and kept
    reasons = {Path(p).name: r for _, p, r in rep.skipped}
    assert {name: r.split(":")[0] for name, r in reasons.items()} == {
        "corrupt.wav": "unreadable", "header_cut.wav": "unreadable", "half.wav": "truncated",
        "zero_length.wav": "empty", "no_samples.wav": "empty", "silent.wav": "silent",
        "missing.wav": "unreadable"}
    printed = capsys.readouterr().err  # the summary is printed even with progress=False
    assert "7 skipped" in printed and "1 truncated" in printed and "1 silent" in printed
    assert "corrupt.wav: unreadable" in printed and "and 2 more" in printed
    assert "7 skipped" in str(rep)


@pytest.mark.parametrize("bad", ["corrupt", "silent"])
def test_on_error_raise_names_the_file(tmp_path, tone, small, bad):
    good = tone(tmp_path / "good.wav")
    path = tmp_path / f"{bad}.wav"
    if bad == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    else:
        sf.write(path, np.zeros(8000), 16000)
    reason = "unreadable" if bad == "corrupt" else "silent"
    with pytest.raises(FeatureError, match=f"{bad}.wav: {reason}"):
        extract_features([good, path], small, progress=False, on_error="raise")
    with pytest.raises(FeatureError):
        extract_features([good, path], small.model_copy(update={"on_error": "raise"}),
                         progress=False)


def test_bad_rates_and_overflowing_samples_are_skipped_not_fatal(tmp_path, tone, small, capsys,
                                                                 header_rate, huge_wav):
    """Header rate 0 (was a ZeroDivisionError that stopped the whole run), 1 Hz (was kept:
    seconds of resampling to a huge array) and a float WAV whose finite samples overflow into
    NaN features (were cached and batched): each skipped with its reason; nothing non-finite
    is returned or cached."""
    good = tone(tmp_path / "good.wav")
    zero = header_rate(tone(tmp_path / "zero.wav"), 0)
    one = header_rate(tone(tmp_path / "one.wav", seconds=2.0), 1)
    huge = huge_wav(tmp_path / "huge.wav")
    t0 = time.perf_counter()
    x, rep = extract_features([good, zero, one, huge], small, tmp_path / "cache", progress=False)
    assert time.perf_counter() - t0 < 10
    assert rep.kept == [0] and x.shape[0] == 1 and torch.isfinite(x).all()
    reasons = {Path(p).name: r for _, p, r in rep.skipped}
    assert reasons["zero.wav"].startswith("bad sample rate: the file says 0 Hz")
    assert reasons["one.wav"].startswith("bad sample rate: the file says 1 Hz")
    assert reasons["huge.wav"].startswith("non-finite: the features hold NaN or inf")
    assert "sample peak 1e+30" in reasons["huge.wav"]
    assert len(list((tmp_path / "cache").rglob("*.f32"))) == 1  # only the good clip's features
    x2, rep2 = extract_features([good, zero, one, huge], small, tmp_path / "cache",
                                progress=False)
    assert rep2.from_cache == 4 and rep2.skipped == rep.skipped and torch.equal(x, x2)
    assert "2 bad sample rate" in capsys.readouterr().err


def test_long_files_are_read_only_as_far_as_the_window(tmp_path, small):
    """A 10-minute file costs no more than its first second (plus a margin) to featurise."""
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(0.3 * np.sin(np.arange(16000) / 5), 600).astype(np.float32), 16000)
    cut = tmp_path / "cut.wav"
    sf.write(cut, sf.read(path, frames=24000, dtype="float32")[0], 16000)
    x, _ = extract_features([path, cut], small, progress=False)
    assert torch.equal(x[0], x[1])
