"""Feature extraction speed, cold vs warm cache (run: pytest benchmarks/bench_features.py -s).

Uses 256 clips of the synthetic demo corpus (2 s each; no data needed) with the default
(paper) config -- 8 s window, 128 MFCC x 128 frames -- and the demo's 2 s, 32 x 32, with 1 and
2 worker processes. Cold = an
empty cache (after one warm-up clip, so librosa's first-call cost is not counted); warm = every
clip from the cache, each entry's checksum verified. The warm path must be >= 20x faster.
The machine's load average (1 min) before and after each case is printed and recorded, since
other jobs on a shared machine slow the cold side most.
"""

import os
import time

import pytest

from nasspeech.data import FeatureConfig, extract_features, generate_demo_corpus, load_manifest

CONFIGS = {
    "paper-8s-128x128": FeatureConfig(),
    "demo-32x32": FeatureConfig(duration=2.0, n_mfcc=32, frames=32, n_fft=512, hop_length=128,
                                n_mels=40),
}


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    manifest = generate_demo_corpus(tmp_path_factory.mktemp("corpus"), n_speakers=8,
                                    clips_per_emotion=8, duration=2.0)
    return load_manifest(manifest)[0]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cold_vs_warm(benchmark, tmp_path, items, name, workers):
    cfg = CONFIGS[name]
    load_before = os.getloadavg()[0]
    extract_features(items[:1], cfg, None, progress=False)  # warm-up (imports, JIT)
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    cold_x, cold_report = extract_features(items, cfg, cache, workers=workers, progress=False)
    cold = time.perf_counter() - t0
    warm_x, warm_report = benchmark.pedantic(
        extract_features, args=(items, cfg, cache, workers), kwargs={"progress": False},
        rounds=10, iterations=1, warmup_rounds=1)
    warm = benchmark.stats.stats.median
    n = len(items)
    load_after = os.getloadavg()[0]
    benchmark.extra_info.update(clips=n, cold_clips_per_s=n / cold, warm_clips_per_s=n / warm,
                                speedup=cold / warm, load_before=load_before,
                                load_after=load_after)
    print(f"\n{name} workers={workers}: cold {n / cold:.0f} clips/s, warm {n / warm:.0f} "
          f"clips/s, speed-up {cold / warm:.0f}x (load average {load_before:.2f} before, "
          f"{load_after:.2f} after, {os.cpu_count()} cores)")
    assert (cold_report.extracted, warm_report.from_cache) == (n, n)
    assert warm_x.equal(cold_x)
    assert cold / warm >= 20
