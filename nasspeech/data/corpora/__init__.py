"""Corpus loaders: each returns ``(list[Item], LoadReport)``; :func:`load_corpus` dispatches."""

from __future__ import annotations

from pathlib import Path

from nasspeech.data.config import DataConfig
from nasspeech.data.corpora.folder import load_folder
from nasspeech.data.corpora.iemocap import load_iemocap
from nasspeech.data.corpora.manifest import CorpusError, load_manifest
from nasspeech.data.corpora.msp_improv import load_msp_improv
from nasspeech.data.corpora.msp_podcast import load_msp_podcast
from nasspeech.data.items import Item
from nasspeech.data.report import LoadReport

__all__ = ["CorpusError", "load_corpus", "load_folder", "load_iemocap", "load_manifest",
           "load_msp_improv", "load_msp_podcast"]


def _need(value: str | None, what: str, corpus: str) -> str:
    if not value:
        raise CorpusError(f"data.corpus={corpus!r} needs data.{what}")
    return value


def load_corpus(config: DataConfig, progress: bool = True) -> tuple[list[Item], LoadReport]:
    """Load ``config.corpus`` (generating the demo corpus first, with a progress bar, when it
    is ``"demo"`` and not yet complete on disk)."""
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
    raise CorpusError(f"unknown corpus {c!r}")
