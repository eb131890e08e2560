"""Features of many clips: on-disk cache, process pool, progress bar and a report."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nasspeech.data.audio import SkipClip
from nasspeech.data.cache import FeatureCache, file_key
from nasspeech.data.config import FeatureConfig
from nasspeech.data.features import check_features, file_features
from nasspeech.data.items import Item
from nasspeech.data.report import ExtractionReport

Job = tuple[int, str, "str | None", FeatureConfig, "str | None"]


class FeatureError(RuntimeError):
    """A clip that could not give features while ``on_error="raise"``, or a cache folder
    that cannot be used."""


def _init_worker() -> None:
    """One BLAS/OpenMP thread per worker process: the processes are the parallelism
    (measured on 2 cores: 2 workers x 2 BLAS threads were slower than 1 process). The
    features do not depend on it: they are always computed with one BLAS thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    torch.set_num_threads(1)


def _open_cache(cache_dir: str | Path, config: FeatureConfig) -> FeatureCache:
    try:
        return FeatureCache(cache_dir, config)
    except OSError as exc:
        raise FeatureError(f"feature cache {cache_dir}: {exc.strerror or exc}") from None


def _work(job: Job) -> tuple[int, np.ndarray | str, str | None]:
    """Extract one clip (in a worker process) and cache the result itself, so finished work
    survives a crash of the run. Returns (index, features or skip reason, cache write error)."""
    index, path, key, config, cache_dir = job
    try:
        result: np.ndarray | str = file_features(path, config)
    except SkipClip as exc:
        result = exc.reason
    if cache_dir is None or key is None:
        return index, result, None
    try:
        _open_cache(cache_dir, config).put(key, result)
    except OSError as exc:
        return index, result, f"{exc.filename2 or exc.filename}: {exc.strerror or exc}"
    except FeatureError as exc:
        return index, result, str(exc)
    return index, result, None


def extract_features(items: Sequence[Item | str | Path], config: FeatureConfig | None = None,
                     cache_dir: str | Path | None = None, workers: int | None = 1,
                     progress: bool = True, on_error: str | None = None
                     ) -> tuple[torch.Tensor, ExtractionReport]:
    """Features of ``items`` as an ``N x 1 x n_mfcc x frames`` float32 tensor.

    Rows follow ``report.kept`` (item indices); skipped clips (unreadable / truncated / empty
    / bad sample rate / non-finite / silent) are listed with their reason in
    ``report.skipped`` and printed, or raise :class:`FeatureError` naming the file with
    ``on_error="raise"`` (default: ``config.on_error``). Every row is finite. With
    ``cache_dir`` results are cached per file identity and config (corrupt entries are
    recomputed and counted in ``report.corrupt``); ``workers > 1`` uses a process pool
    (``None``: one per CPU core). The features do not depend on ``workers``.
    """
    config = config or FeatureConfig()
    on_error = on_error or config.on_error
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    t0 = time.perf_counter()
    paths = [str(i.path) if isinstance(i, Item) else str(i) for i in items]
    cache = _open_cache(cache_dir, config) if cache_dir is not None else None
    results: dict[int, np.ndarray | str] = {}
    report = ExtractionReport()
    jobs: list[Job] = []
    for index, path in enumerate(paths):
        key = None
        if cache is not None:
            try:
                key = file_key(path)
            except OSError:
                key = None  # missing file: not cached, reported as unreadable below
            hit = cache.get(key) if key else None
            if hit is not None:
                results[index] = hit
                report.from_cache += 1
                continue
        jobs.append((index, path, key, config, str(cache_dir) if cache_dir is not None else None))
    if cache is not None:
        report.corrupt = list(cache.corrupt)
    bar = tqdm(total=len(paths), initial=len(paths) - len(jobs), desc="features", unit="clip",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                max_workers=min(workers, len(jobs)), initializer=_init_worker))
            done = pool.map(_work, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
        else:
            done = map(_work, jobs)
        for index, result, cache_error in done:
            results[index] = result
            if cache_error:
                report.cache_errors.append(cache_error)
            bar.update()
    bar.close()
    rows = []
    for index in range(len(paths)):
        result = results[index]
        if not isinstance(result, str):
            try:
                check_features(result)
            except SkipClip as exc:
                result = exc.reason
        if isinstance(result, str):
            if on_error == "raise":
                raise FeatureError(f"{paths[index]}: {result}")
            report.skipped.append((index, paths[index], result))
        else:
            report.kept.append(index)
            rows.append(result)
    report.extracted = len(jobs) - sum(1 for j in jobs if isinstance(results[j[0]], str))
    if rows:
        x = torch.from_numpy(np.stack(rows)).unsqueeze(1)
    else:
        x = torch.zeros(0, 1, config.n_mfcc, config.frames)
    report.seconds = time.perf_counter() - t0
    if progress or report.skipped or report.corrupt or report.cache_errors:
        print(report, file=sys.stderr, flush=True)
    return x, report
