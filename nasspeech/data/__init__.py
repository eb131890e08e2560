"""Speech data: corpus loaders, cached MFCC features, speaker-independent folds, demo corpus.

See docs/data.md. The names below load on first use (:mod:`nasspeech.lazy`): a run config
needs :class:`DataConfig` only, not the corpus readers and audio libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasspeech.lazy import lazy_names

if TYPE_CHECKING:
    from nasspeech.data.config import DataConfig, DemoCorpusConfig, FeatureConfig
    from nasspeech.data.corpora import (
        CorpusError,
        CorpusWarning,
        load_corpus,
        load_crema_d,
        load_emodb,
        load_folder,
        load_iemocap,
        load_manifest,
        load_msp_improv,
        load_msp_podcast,
        load_ravdess,
    )
    from nasspeech.data.extract import FeatureError, extract_features
    from nasspeech.data.features import compute_features
    from nasspeech.data.folds import Fold, FoldError, folds_for, make_folds, save_folds
    from nasspeech.data.items import CLASSES, Item
    from nasspeech.data.report import ExtractionReport, LoadReport
    from nasspeech.data.synthetic import generate_demo_corpus

_WHERE = {
    "CLASSES": "items",
    "CorpusError": "corpora",
    "CorpusWarning": "corpora",
    "DataConfig": "config",
    "DemoCorpusConfig": "config",
    "ExtractionReport": "report",
    "FeatureConfig": "config",
    "FeatureError": "extract",
    "Fold": "folds",
    "FoldError": "folds",
    "Item": "items",
    "LoadReport": "report",
    "compute_features": "features",
    "extract_features": "extract",
    "folds_for": "folds",
    "generate_demo_corpus": "synthetic",
    "load_corpus": "corpora",
    "load_crema_d": "corpora",
    "load_emodb": "corpora",
    "load_folder": "corpora",
    "load_iemocap": "corpora",
    "load_manifest": "corpora",
    "load_msp_improv": "corpora",
    "load_msp_podcast": "corpora",
    "load_ravdess": "corpora",
    "make_folds": "folds",
    "save_folds": "folds",
}

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
__all__ = [
    "CLASSES",
    "CorpusError",
    "CorpusWarning",
    "DataConfig",
    "DemoCorpusConfig",
    "ExtractionReport",
    "FeatureConfig",
    "FeatureError",
    "Fold",
    "FoldError",
    "Item",
    "LoadReport",
    "compute_features",
    "extract_features",
    "folds_for",
    "generate_demo_corpus",
    "load_corpus",
    "load_crema_d",
    "load_emodb",
    "load_folder",
    "load_iemocap",
    "load_manifest",
    "load_msp_improv",
    "load_msp_podcast",
    "load_ravdess",
    "make_folds",
    "save_folds",
]
