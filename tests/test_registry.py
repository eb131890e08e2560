"""The op registry: registration, duplicates and overrides, lookups and their error messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import nasspeech
from nasspeech.registry import (
    REGISTRY,
    DuplicateOpError,
    OpContractError,
    Operation,
    OpRegistry,
    UnknownOpError,
    check_op,
    expected_shape,
    get_op,
    list_ops,
    register_op,
    registering_as,
)

USER_SOURCE = f"user:{__name__}"


@pytest.fixture
def clean_registry():
    """Undo every registration and override a test makes in the global registry."""
    before = {(op.family, op.name): op for op in list_ops()}
    yield
    for op in list_ops():
        key = (op.family, op.name)
        if key not in before:
            REGISTRY.remove(*key)
        elif before[key] is not op:
            REGISTRY.add(before[key], override=True)


class Scale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class SmallBatchesOnly(nn.Module):
    """Breaks the contract only for batches above 3 (like the reference's attention ops)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 3:
            raise RuntimeError("only batches up to 3")
        return x


def test_decorator_registers_a_working_user_op(clean_registry):
    @register_op("seq", "test_scale", tags=("test",))
    def test_scale(channels: int, stride: int = 1) -> nn.Module:
        """Per-channel scaling.

        More text that is not the description.
        """
        return Scale(channels)

    op = get_op("seq", "test_scale")
    assert op.source == USER_SOURCE
    assert op.description == "Per-channel scaling."
    assert op.parametric and not op.is_zero and op.tags == ("test",)
    assert op in list_ops("seq") and op not in list_ops("cnn")
    assert op.as_dict() == {
        "family": "seq", "name": "test_scale", "description": "Per-channel scaling.",
        "source": USER_SOURCE, "parametric": True, "tags": ["test"],
    }
    assert tuple(op.build(6)(torch.randn(2, 5, 6)).shape) == (2, 5, 6)
    assert test_scale(3) is not None  # the decorator returns the factory unchanged
    assert nasspeech.get_op("seq", "test_scale") is op  # the top-level API is the same


def test_explicit_description_wins_over_docstring(clean_registry):
    register_op("seq", "test_described", description="given")(lambda c, s=1: Scale(c))
    assert get_op("seq", "test_described").description == "given"


def test_duplicate_registration_names_both_sources(clean_registry):
    register_op("seq", "test_dup")(lambda c, s=1: Scale(c))
    with registering_as("some-plugin"), pytest.raises(DuplicateOpError) as err:
        register_op("seq", "test_dup")(lambda c, s=1: Scale(c))
    message = str(err.value)
    assert "seq/test_dup" in message and USER_SOURCE in message and "some-plugin" in message
    assert "override=True" in message
    assert get_op("seq", "test_dup").source == USER_SOURCE  # the first one stays


def test_duplicate_of_a_builtin_is_refused(clean_registry):
    original = get_op("cnn", "sep_conv_3x3")
    with pytest.raises(DuplicateOpError, match=rf"cnn/sep_conv_3x3.*built-in.*{USER_SOURCE}"):
        register_op("cnn", "sep_conv_3x3")(lambda c, s=1: nn.Identity())
    assert get_op("cnn", "sep_conv_3x3") is original


def test_override_replaces_on_purpose(clean_registry):
    original = get_op("seq", "skip_connect")

    @register_op("seq", "skip_connect", parametric=False, override=True)
    def my_skip(channels: int, stride: int = 1) -> nn.Module:
        """My identity."""
        return nn.Identity()

    op = get_op("seq", "skip_connect")
    assert op is not original and op.factory is my_skip and op.source == USER_SOURCE
    assert op.description == "My identity."


def test_override_is_undone_by_the_fixture():
    """Guards the fixture above: the override of the previous test did not leak."""
    assert get_op("seq", "skip_connect").source == "built-in"
    assert "test_dup" not in REGISTRY.names("seq")


def test_unknown_op_names_it_lists_known_ones_and_suggests():
    with pytest.raises(UnknownOpError) as err:
        get_op("seq", "lstm_att1")
    message = str(err.value)
    assert "'lstm_att1'" in message and "Did you mean 'lstm_att_1'" in message
    for known in ("lstm_1", "rnn_att_2", "skip_connect", "none"):
        assert known in message
    assert "sep_conv_3x3" not in message  # only the family's own ops
    assert isinstance(err.value, KeyError)  # dict-style lookups can catch it


def test_unknown_op_without_close_match_has_no_suggestion():
    with pytest.raises(UnknownOpError) as err:
        get_op("cnn", "zzzzzz")
    assert "Did you mean" not in str(err.value) and "max_pool_3x3" in str(err.value)


def test_unknown_family():
    with pytest.raises(UnknownOpError, match=r"unknown op family 'rnn'.*cnn, seq"):
        get_op("rnn", "lstm_1")
    with pytest.raises(ValueError, match=r"'x'.*unknown family 'rnn'.*cnn, seq"):
        register_op("rnn", "x")(lambda c, s=1: nn.Identity())


@pytest.mark.parametrize("name", ["", "two words", "a-b"])
def test_bad_op_names_are_refused(name):
    registry = OpRegistry()
    with pytest.raises(ValueError, match="identifier"):
        registry.add(Operation("seq", name, lambda c, s=1: nn.Identity()))


def test_build_checks_arguments_and_result():
    seq = Operation("seq", "x", lambda c, s=1: Scale(c), source="somewhere")
    with pytest.raises(ValueError, match="seq/x.*no stride"):
        seq.build(4, 2)
    with pytest.raises(ValueError, match="seq/x.*channels must be >= 1"):
        seq.build(0)
    cnn = Operation("cnn", "y", lambda c, s=1: nn.Identity())
    with pytest.raises(ValueError, match="cnn/y.*stride must be 1 or 2"):
        cnn.build(4, 3)
    bad = Operation("seq", "z", lambda c, s=1: (lambda x: x), source="somewhere")
    with pytest.raises(TypeError, match="seq/z.*somewhere.*function.*nn.Module"):
        bad.build(4)


def test_list_ops_is_sorted_and_filtered():
    ops = list_ops()
    assert ops == sorted(ops, key=lambda op: (op.family, op.name))
    assert {op.family for op in list_ops("cnn")} == {"cnn"}
    assert list_ops("seq") == [op for op in ops if op.family == "seq"]


def test_registering_as_routes_into_another_registry():
    other = OpRegistry()
    with registering_as("my-dist", other):
        register_op("seq", "test_routed")(lambda c, s=1: Scale(c))
    assert other._ops[("seq", "test_routed")].source == "my-dist"
    assert "test_routed" not in REGISTRY.names("seq")


def test_expected_shape():
    assert expected_shape("cnn", (2, 3, 7, 8), 2) == (2, 3, 4, 4)
    assert expected_shape("cnn", (2, 3, 7, 8), 1) == (2, 3, 7, 8)
    assert expected_shape("seq", (2, 9, 5)) == (2, 9, 5)


def test_check_op_reports_what_is_wrong():
    assert check_op(get_op("seq", "lstm_att_1")) is None
    assert check_op(get_op("cnn", "sep_conv_3x3")) is None
    shrink = Operation("seq", "shrink", lambda c, s=1: nn.Linear(c, max(1, c - 1)))
    assert "expected (5, 5, 4)" in check_op(shrink)
    tuple_op = Operation("seq", "tup", lambda c, s=1: nn.LSTM(c, c, batch_first=True))
    assert "returned tuple" in check_op(tuple_op)
    fixed_width = Operation("seq", "w4", lambda c, s=1: nn.Linear(4, 4))  # ignores channels
    assert "raised RuntimeError" in check_op(fixed_width)
    floor = Operation("cnn", "floor", lambda c, s=1: nn.MaxPool2d(s, s))  # floor, not ceil
    assert "expected (1, 5, 4, 3)" in check_op(floor)
    # batch 5 as well as 1: an op that only works for small batches is caught
    small_batches = Operation("seq", "b3", lambda c, s=1: SmallBatchesOnly())
    assert "raised RuntimeError: only batches up to 3" in check_op(small_batches)


def test_docs_decorator_example_runs(clean_registry, capsys):
    """The first Python block of docs/registering-ops.md runs as written."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "registering-ops.md"
    block = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL)[0]
    exec(compile(block, str(doc), "exec"), {"__name__": "my_ops"})  # noqa: S102
    assert capsys.readouterr().out.startswith("user:my_ops | Depthwise temporal convolution")
    assert get_op("seq", "tconv_3").source == "user:my_ops"


def test_ops_command_table_and_json(capsys):
    from nasspeech.cli.main import main

    assert main(["ops", "--family", "seq"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["family", "name", "parametric", "source", "description"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["lstm_att_1"][:4] == ["seq", "lstm_att_1", "yes", "built-in"]
    assert rows["skip_connect"][2] == "no"
    assert all(row[0] == "seq" for row in rows.values())

    assert main(["ops", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(o["family"], o["name"]) for o in listed] == [(op.family, op.name) for op in list_ops()]
    assert {"family", "name", "description", "source"} <= set(listed[0])


def test_decorator_smoke_tests_the_op_and_names_it(clean_registry):
    """A user op with a wrong output shape is refused where it is registered, naming it."""
    with pytest.raises(OpContractError) as err:
        register_op("seq", "test_halves")(lambda c, s=1: nn.Linear(c, max(1, c // 2)))
    message = str(err.value)
    assert "op seq/test_halves" in message and USER_SOURCE in message
    assert "gave output (5, 5, 2), expected (5, 5, 4)" in message
    assert "test_halves" not in REGISTRY.names("seq")
    with pytest.raises(OpContractError, match=r"seq/test_b3 .*only batches up to 3"):
        register_op("seq", "test_b3")(lambda c, s=1: SmallBatchesOnly())
    # an override that breaks the contract leaves the original in place
    original = get_op("seq", "skip_connect")
    with pytest.raises(OpContractError, match="seq/skip_connect"):
        register_op("seq", "skip_connect", override=True)(lambda c, s=1: nn.Linear(c, 1))
    assert get_op("seq", "skip_connect") is original


def test_unknown_op_of_another_family_says_where_it_is():
    with pytest.raises(UnknownOpError) as err:
        get_op("seq", "sep_conv_3x3")
    assert "'sep_conv_3x3' is a cnn op: use it in a cnn component" in str(err.value)
    assert "Did you mean" not in str(err.value)


def test_unknown_op_names_a_rejected_op_and_a_failed_plugin():
    registry = OpRegistry()
    registry._loaded = True  # no plugin autoloading into this one
    bad = Operation("seq", "shrinks", lambda c, s=1: nn.Linear(c, 1), source="my-dist")
    registry.note_rejected(bad, "plugin 'my-dist' registers it, but it was rejected: shapes")
    with pytest.raises(UnknownOpError, match=r"seq op 'shrinks' is not available: plugin "
                                             r"'my-dist' registers it, but it was rejected"):
        registry.get("seq", "shrinks")
    registry.note_failed_plugin("plugin 'other-dist'", "ImportError: no module named x")
    with pytest.raises(UnknownOpError) as err:
        registry.get("seq", "gru_9")
    assert ("plugin 'other-dist' failed to load: ImportError: no module named x; "
            "the op may come from it") in str(err.value)


def test_an_op_failing_inside_a_network_is_named(clean_registry):
    """An op that passes the smoke test but fails on another input: the error keeps its type
    and gets a note naming the op, in the supernet and in a derived model."""
    import sys

    from nasspeech.genotype import Genotype
    from nasspeech.space import SearchSpace

    class FailsOnLongSequences(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] > 6:
                raise RuntimeError("sequence too long")
            return x

    register_op("seq", "test_short_only")(lambda c, s=1: FailsOnLongSequences())
    space = SearchSpace(input_shape=(9, 4), num_classes=2, components=[{
        "name": "seq", "family": "seq", "ops": ["test_short_only", "lstm_1"], "cells": 1,
        "nodes": 1, "channels": 4}])
    genotype = Genotype.model_validate({"space": "space", "components": [{
        "name": "seq", "family": "seq",
        "cells": {"cell": {"nodes": [[{"source": 1, "op": "test_short_only"}]],
                           "concat": [2]}}}]})
    for model in (space.build_supernet(), space.derive(genotype)):
        with pytest.raises(RuntimeError, match="sequence too long") as err:
            model(torch.randn(2, 9, 4))
        if sys.version_info >= (3, 11):
            assert "in candidate op seq/test_short_only (source user:" in err.value.__notes__[0]
            assert "shape (2, 9, 4)" in err.value.__notes__[0]
