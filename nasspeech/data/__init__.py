"""Speech data: corpus loaders, cached MFCC features, speaker-independent folds, demo corpus.

See docs/data.md.
"""

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
