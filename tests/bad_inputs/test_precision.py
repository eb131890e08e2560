"""Bad inputs of the precision settings (``search.precision``, ``train.precision``, the
deprecated ``amp``, ``--precision``, the API's ``precision=``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from nasspeech.config import ConfigError, RunConfig
from nasspeech.kernels.precision import PrecisionError, autocast, check_precision

from .table import Case, check, params
from .test_memory import _estimate  # a small run config for nasspeech estimate

_BAD_PRECISION = {"old": "order: 1}", "new": "order: 1, precision: fp16}"}


def _run_config(**extra):
    """A whole run config with ``extra`` top-level keys (FutureWarnings of ``amp`` muted)."""
    data = {"space": {"input_shape": [1, 8, 8], "num_classes": 4, "components": [
        {"name": "cnn", "family": "cnn", "ops": ["skip_connect"], "cells": 1, "nodes": 1,
         "channels": 4}]}, "data": {"features": {"n_mfcc": 8, "frames": 8}}, **extra}

    def run(_tmp: Path) -> RunConfig:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return RunConfig.from_mapping(data)
    return run


CASES = [
    Case("search-precision-fp16", _estimate(**_BAD_PRECISION),
         r"search\.precision: Input should be 'fp32' or 'bf16' \(got 'fp16'\)"),
    Case("train-precision-fp16", _run_config(train={"precision": "fp16"}),
         r"train\.precision: Input should be 'fp32' or 'bf16' \(got 'fp16'\)",
         error=ConfigError),
    Case("amp-contradicts-precision", _run_config(amp=True, search={"precision": "fp32"}),
         r"amp: true contradicts search\.precision: fp32 \(drop the deprecated amp\)",
         error=ConfigError),
    Case("amp-not-a-boolean", _run_config(amp="yes"),
         r"amp must be true or false \(deprecated: use search\.precision and "
         r"train\.precision\), got 'yes'", error=ConfigError),
    Case("estimate-precision-flag-fp16", _estimate("--precision", "fp16"),
         r"--precision: invalid choice: 'fp16' \(choose from '?fp32'?, '?bf16'?\)"),
    Case("api-precision-unknown", lambda _tmp: check_precision("fp16"),
         r"unknown precision 'fp16': choose one of fp32 \| bf16", error=PrecisionError),
    Case("api-bf16-on-another-device", lambda _tmp: autocast("mps", "bf16"),
         r"precision bf16 needs a cpu or cuda device, not 'mps'", error=PrecisionError),
]


@params(CASES)
def test_bad_precision_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_precision_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_precision("half")
