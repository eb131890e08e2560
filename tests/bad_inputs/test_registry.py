"""Bad inputs of the registries (families, hand-overs, baselines, ops): each a clear error
naming the family, name or field, the same vocabulary in every registry."""

from __future__ import annotations

from nasspeech import Family, register_family
from nasspeech.baselines import UnknownBaselineError, build_baseline, register_baseline
from nasspeech.registry import DuplicateNameError, UnknownFamilyError, get_family
from nasspeech.space import get_handover, register_handover
from nasspeech.space.handover import UnknownHandoverError

from .table import Case, check, params


class _Unnamed(Family):
    rank = 2


class _Rankless(Family):
    name = "rankless"


class _Cnn(Family):
    name = "cnn"
    rank = 3


CASES = [
    Case("family_unknown", lambda tmp: get_family("cnnn"),
         r"unknown op family 'cnnn' \(known families: cnn, seq", UnknownFamilyError),
    Case("family_without_name", lambda tmp: register_family(_Unnamed),
         r"family name '' must be a non-empty identifier", ValueError),
    Case("family_without_rank", lambda tmp: register_family(_Rankless),
         r"family 'rankless': rank must be >= 1", ValueError),
    Case("family_taken", lambda tmp: register_family(_Cnn),
         r"op family 'cnn' is already registered by built-in.*override=True", DuplicateNameError),
    Case("handover_typo", lambda tmp: get_handover("mean_over_tme"),
         r"unknown hand-over 'mean_over_tme' \(did you mean 'mean_over_time'\?\); known "
         r"hand-overs: .*fold_frequency", UnknownHandoverError),
    Case("handover_taken", lambda tmp: register_handover("identity")(lambda in_shape: None),
         r"hand-over 'identity' is already registered by built-in.*override=True",
         DuplicateNameError),
    Case("baseline_typo", lambda tmp: build_baseline("cnn_lstn", (1, 8, 8), 2),
         r"unknown baseline 'cnn_lstn' \(did you mean 'cnn_lstm'\?\); known baselines",
         UnknownBaselineError),
    Case("baseline_taken", lambda tmp: register_baseline("cnn")(lambda shape, n: None),
         r"baseline 'cnn' is already registered by built-in.*override=True", DuplicateNameError),
]


@params(CASES)
def test_registry_bad_input(case: Case, tmp_path) -> None:
    check(case, tmp_path)
