"""Feature extraction speed, cold vs warm cache (run: pytest benchmarks/bench_features.py -s).

Uses the synthetic demo corpus (no data needed). The warm (cached) path must be >= 20x faster.
"""

import time

import pytest

from nasspeech.data import FeatureConfig, extract_features, generate_demo_corpus, load_manifest


@pytest.mark.parametrize("workers", [1, 2])
def test_cold_vs_warm(benchmark, tmp_path, workers):
    manifest = generate_demo_corpus(tmp_path / "corpus", n_speakers=8, clips_per_emotion=8)
    items, _ = load_manifest(manifest)
    cfg = FeatureConfig(duration=2.0)  # the paper's 128 MFCC x 128 frames, 2 s clips
    t0 = time.perf_counter()
    extract_features(items, cfg, tmp_path / "cache", workers=workers, progress=False)
    cold = time.perf_counter() - t0
    warm = benchmark.pedantic(extract_features, args=(items, cfg, tmp_path / "cache", workers),
                              kwargs={"progress": False}, rounds=3, iterations=1)
    warm_s = benchmark.stats.stats.median
    n = len(items)
    benchmark.extra_info.update(clips=n, cold_clips_per_s=n / cold, warm_clips_per_s=n / warm_s)
    print(f"\nworkers={workers}: cold {n / cold:.0f} clips/s, warm {n / warm_s:.0f} clips/s, "
          f"speed-up {cold / warm_s:.0f}x")
    assert warm[0].shape[0] == n
    assert cold / warm_s >= 20
