"""Corpus loaders: each returns ``(list[Item], LoadReport)``; :func:`load_corpus` dispatches."""

from __future__ import annotations

import warnings
from pathlib import Path

from nasspeech.data.config import DataConfig
from nasspeech.data.corpora.crema_d import load_crema_d
from nasspeech.data.corpora.emodb import load_emodb
from nasspeech.data.corpora.folder import load_folder
from nasspeech.data.corpora.iemocap import load_iemocap
from nasspeech.data.corpora.manifest import load_manifest
from nasspeech.data.corpora.msp_improv import load_msp_improv
from nasspeech.data.corpora.msp_podcast import load_msp_podcast
from nasspeech.data.corpora.ravdess import load_ravdess
from nasspeech.data.items import CorpusError, CorpusWarning, Item
from nasspeech.data.report import LoadReport

__all__ = ["CorpusError", "CorpusWarning", "load_corpus", "load_crema_d", "load_emodb",
           "load_folder", "load_iemocap", "load_manifest", "load_msp_improv", "load_msp_podcast",
           "load_ravdess"]


def _need(value: str | None, what: str, corpus: str) -> str:
    if not value:
        raise CorpusError(f"data.corpus={corpus!r} needs data.{what}")
    return value


def _load(config: DataConfig, progress: bool) -> tuple[list[Item], LoadReport]:
    c = config.corpus
    if c == "demo":
        from nasspeech.data.synthetic import generate_demo_corpus

        d = config.demo
        manifest = generate_demo_corpus(config.demo_dir(), d.n_speakers, d.clips_per_emotion,
                                        d.duration, d.sample_rate, d.seed, progress=progress)
        return load_manifest(manifest, corpus="demo")
    if c == "manifest":
        path = _need(config.manifest, "manifest", c)
        return load_manifest(path, config.label_map, config.root, config.on_unknown_label,
                             config.on_missing_file)
    root = Path(_need(config.root, "root", c))
    if c == "folder":
        return load_folder(root, _need(config.speaker_regex, "speaker_regex", c),
                           config.label_map, config.on_unknown_label)
    if c == "iemocap":
        return load_iemocap(root, config.improvised_only, config.merge_excitement,
                            config.label_map)
    if c == "msp_improv":
        return load_msp_improv(root, config.label_map)
    if c == "msp_podcast":
        return load_msp_podcast(root, config.label_map, config.splits)
    if c == "ravdess":
        return load_ravdess(root, config.label_map, config.strong_intensity)
    if c == "emodb":
        return load_emodb(root, config.label_map)
    if c == "crema_d":
        return load_crema_d(root, config.label_map, config.strong_intensity)
    raise CorpusError(f"unknown corpus {c!r}")


def load_corpus(config: DataConfig, progress: bool = True) -> tuple[list[Item], LoadReport]:
    """Load ``config.corpus`` (generating the demo corpus first, with a progress bar, when it
    is ``"demo"`` and not yet complete on disk).

    No clip left (everything skipped or dropped by ``label_map``) is a :class:`CorpusError`
    saying why; the report's warnings (e.g. one class only) are also issued as
    :class:`CorpusWarning`.
    """
    items, report = _load(config, progress)
    if not items:
        reasons = f" ({len(report.skipped)} skipped: {report.reasons()})" if report.skipped else ""
        raise CorpusError(f"{report.corpus} {report.source}: no clips left{reasons}")
    for warning in report.warnings:
        warnings.warn(f"{report.corpus} {report.source}: {warning}", CorpusWarning, stacklevel=2)
    return items, report
