"""Take a retrained model out of nasspeech: ONNX / TorchScript export with an input contract
(:func:`export_model`), and predictions on audio files (:func:`open_model`,
:func:`predict_files`) from an exported file or a train run directory. See docs/export.md."""

from nasspeech.export.errors import ExportError
from nasspeech.export.exporter import ExportResult, export_model
from nasspeech.export.predict import Prediction, ReadyModel, open_model, predict_files
from nasspeech.export.source import TrainedModel, load_trained

__all__ = ["ExportError", "ExportResult", "Prediction", "ReadyModel", "TrainedModel",
           "export_model", "load_trained", "open_model", "predict_files"]
