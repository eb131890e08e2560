"""Take a retrained model out of nasspeech: ONNX / TorchScript export with an input contract
(:func:`export_model`), and predictions on audio files (:func:`open_model`,
:func:`predict_files`) from an exported file or a train run directory. See docs/export.md.
The names load on first use (:mod:`nasspeech.lazy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasspeech.lazy import lazy_names

if TYPE_CHECKING:
    from nasspeech.export.errors import ExportError
    from nasspeech.export.exporter import ExportResult, export_model
    from nasspeech.export.predict import Prediction, ReadyModel, open_model, predict_files
    from nasspeech.export.source import TrainedModel, load_trained

_WHERE = {
    "ExportError": "errors",
    "ExportResult": "exporter",
    "Prediction": "predict",
    "ReadyModel": "predict",
    "TrainedModel": "source",
    "export_model": "exporter",
    "load_trained": "source",
    "open_model": "predict",
    "predict_files": "predict",
}

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
__all__ = [
    "ExportError",
    "ExportResult",
    "Prediction",
    "ReadyModel",
    "TrainedModel",
    "export_model",
    "load_trained",
    "open_model",
    "predict_files",
]
