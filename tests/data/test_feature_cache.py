"""The feature cache: hits, invalidation of only what changed, atomic entries, an interrupted
run resumes, corrupt entries are detected and recomputed, and the process pool gives the same
features."""

import os
import shutil
import time

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import nasspeech.data.extract as extract_mod
from nasspeech.data import extract_features
from nasspeech.data.cache import DIGEST


def test_cache_hits_and_invalidates_only_what_changed(tmp_path, tone, small):
    files = [tone(tmp_path / f"{i}.wav", amp=0.1 + 0.1 * i, freq=200 + 50 * i) for i in range(4)]
    cache = tmp_path / "cache"
    x1, r1 = extract_features(files, small, cache, progress=False)
    x2, r2 = extract_features(files, small, cache, progress=False)
    assert (r1.extracted, r1.from_cache) == (4, 0)
    assert (r2.extracted, r2.from_cache) == (0, 4) and torch.equal(x1, x2)
    # one file changes: only it is recomputed
    tone(files[2], freq=900)
    os.utime(files[2], ns=(time.time_ns(), time.time_ns() + 10**9))
    x3, r3 = extract_features(files, small, cache, progress=False)
    assert (r3.extracted, r3.from_cache) == (1, 3)
    assert not torch.equal(x3[2], x1[2]) and torch.equal(x3[0], x1[0])
    # one feature parameter changes: recomputed under the new config, the old entries stay
    _, r4 = extract_features(files, small.model_copy(update={"n_mfcc": 13}), cache,
                             progress=False)
    assert (r4.extracted, r4.from_cache) == (4, 0)
    _, r5 = extract_features(files, small, cache, progress=False)
    assert (r5.extracted, r5.from_cache) == (0, 4)
    # on_error is not a feature parameter: same cache entries
    _, r6 = extract_features(files, small.model_copy(update={"on_error": "raise"}), cache,
                             progress=False)
    assert r6.from_cache == 4
    assert not list(cache.rglob("*.tmp"))  # atomic writes leave no temp files


def test_skips_are_cached_and_reported_again(tmp_path, tone, small):
    good = tone(tmp_path / "good.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    cache = tmp_path / "cache"
    _, r1 = extract_features([good, bad], small, cache, progress=False)
    _, r2 = extract_features([good, bad], small, cache, progress=False)
    assert r2.from_cache == 2 and r2.kept == [0]
    assert [r for _, _, r in r2.skipped] == [r for _, _, r in r1.skipped]


def test_interrupted_run_leaves_only_whole_entries_and_resumes(tmp_path, tone, small,
                                                               monkeypatch):
    files = [tone(tmp_path / f"{i}.wav", freq=200 + 40 * i) for i in range(4)]
    cache = tmp_path / "cache"
    real = extract_mod.file_features
    calls = []

    def crash_on_third(path, config):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, config)

    monkeypatch.setattr(extract_mod, "file_features", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract_features(files, small, cache, progress=False)
    monkeypatch.setattr(extract_mod, "file_features", real)
    entries = list(cache.rglob("*.f32"))
    assert len(entries) == 2 and all(e.stat().st_size == 4 * 20 * 16 + DIGEST for e in entries)
    # a torn write by something else (a half file) and a stale temp file are harmless
    entries[0].write_bytes(entries[0].read_bytes()[:40])
    (entries[0].parent / ".x.f32.stale.tmp").write_bytes(b"junk")
    x, rep = extract_features(files, small, cache, progress=False)
    assert (rep.extracted, rep.from_cache) == (3, 1) and x.shape == (4, 1, 20, 16)
    assert rep.corrupt == [str(entries[0])]
    fresh, _ = extract_features(files, small, None, progress=False)
    assert torch.equal(x, fresh)


def test_process_pool_matches_serial(tmp_path, tone, small):
    """Workers run with one BLAS thread; the serial path is forced to two here. The features
    must still be bit-equal: every path computes them with one BLAS thread."""
    files = [tone(tmp_path / f"{i}.wav", freq=150 + 60 * i) for i in range(5)]
    with threadpool_limits(limits=2, user_api="blas"):
        serial, _ = extract_features(files, small, progress=False)
    parallel, rep = extract_features(files, small, tmp_path / "cache", workers=2,
                                     progress=False)
    assert torch.equal(serial, parallel) and rep.extracted == 5
    assert len(list((tmp_path / "cache").rglob("*.f32"))) == 5  # workers fill the cache
    warm, rep = extract_features(files, small, tmp_path / "cache", progress=False)
    assert torch.equal(warm, serial) and rep.from_cache == 5


@pytest.mark.parametrize("damage", ["random bytes", "nan", "other clip", "other config",
                                    "old format", "directory"])
def test_corrupt_entries_are_detected_and_recomputed(tmp_path, tone, small, damage):
    files = [tone(tmp_path / f"{i}.wav", freq=200 + 90 * i) for i in range(3)]
    cache = tmp_path / "cache"
    fresh, _ = extract_features(files, small, cache, progress=False)
    victim, other = sorted(cache.rglob("*.f32"))[:2]
    size = victim.stat().st_size
    if damage == "random bytes":
        victim.write_bytes(np.random.default_rng(0).bytes(size))
    elif damage == "nan":
        victim.write_bytes(np.full(size // 4, np.nan, dtype="<f4").tobytes())
    elif damage == "other clip":
        shutil.copyfile(other, victim)
    elif damage == "other config":  # the same clip's entry under a config of the same shape
        extract_features(files, small.model_copy(update={"n_fft": 256}), cache, progress=False)
        twin = next(p for p in cache.rglob(victim.name) if p != victim)
        shutil.copyfile(twin, victim)
    elif damage == "old format":  # raw float32 without a digest (nasspeech < 0.2)
        victim.write_bytes(np.zeros(size // 4, dtype="<f4").tobytes())
    else:
        victim.unlink()
        (victim / "junk").mkdir(parents=True)
    x, rep = extract_features(files, small, cache, progress=False)
    assert torch.equal(x, fresh) and torch.isfinite(x).all()
    assert (rep.extracted, rep.from_cache) == (1, 2) and rep.corrupt == [str(victim)]
    if damage == "directory":  # not ours to delete: bypassed, reported, the run goes on
        assert victim.is_dir() and len(rep.cache_errors) == 1 and "not cached" in str(rep)
    else:
        _, rep = extract_features(files, small, cache, progress=False)
        assert rep.from_cache == 3 and not rep.corrupt  # repaired


@pytest.mark.parametrize("plant", ["text", "other clip's skip"])
def test_a_planted_skip_record_does_not_drop_a_good_clip(tmp_path, tone, small, plant):
    good = tone(tmp_path / "good.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    cache = tmp_path / "cache"
    extract_features([good, bad], small, cache, progress=False)
    entry = next(cache.rglob("*.f32"))
    (skip_of_bad,) = cache.rglob("*.skip")
    entry.unlink()
    planted = entry.with_suffix(".skip")
    if plant == "text":
        planted.write_text("silent: planted")
    else:
        shutil.copyfile(skip_of_bad, planted)
    x, rep = extract_features([good, bad], small, cache, progress=False)
    assert rep.kept == [0] and rep.corrupt == [str(planted)] and x.shape[0] == 1
    assert entry.is_file() and not planted.exists()  # the features replace the bad record


def test_unusable_cache_folder_is_an_error_naming_it(tmp_path, tone, small):
    (tmp_path / "cache").write_text("a file, not a folder")
    with pytest.raises(extract_mod.FeatureError, match="feature cache .*cache"):
        extract_features([tone(tmp_path / "a.wav")], small, tmp_path / "cache", progress=False)
