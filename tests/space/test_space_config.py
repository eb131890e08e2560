"""Search-space configs: loading, validation errors that name the culprit, hand-overs."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from nasspeech.space import SearchSpace, register_handover
from nasspeech.space.config import load_mapping
from nasspeech.space.handover import _HANDOVERS, list_handovers

ROOT = Path(__file__).resolve().parents[2]


def cnn_component(**kw):
    base = dict(name="cnn", family="cnn", ops=["sep_conv_3x3", "skip_connect", "none"],
                cells=2, nodes=2, channels=4)
    base.update(kw)
    return base


def test_unknown_op_error_names_op_component_path_and_known_ops():
    with pytest.raises(ValidationError) as info:
        SearchSpace(input_shape=(1, 8, 8), num_classes=2,
                    components=[cnn_component(ops=["sep_conv_3x3", "sep_conv_9x9"])])
    text = str(info.value)
    assert "components.0.ops" in text
    assert "sep_conv_9x9" in text and "'cnn'" in text
    assert "max_pool_3x3" in text  # lists the known ops


def test_unknown_family_and_duplicate_names_rejected():
    with pytest.raises(ValidationError, match="unknown op family 'rnn'"):
        SearchSpace(input_shape=(1, 8, 8), num_classes=2, components=[cnn_component(family="rnn")])
    with pytest.raises(ValidationError, match="unique"):
        SearchSpace(input_shape=(1, 8, 8), num_classes=2,
                    components=[cnn_component(), cnn_component()])


def test_extra_keys_are_errors_not_silently_ignored():
    with pytest.raises(ValidationError, match="celss"):
        SearchSpace(input_shape=(1, 8, 8), num_classes=2, components=[cnn_component(celss=3)])


def test_shipped_configs_load():
    for path in [ROOT / "examples/emodarts.yaml", ROOT / "examples/darts_cifar10.yaml",
                 *sorted((ROOT / "examples/scopes").glob("*.yaml"))]:
        space = SearchSpace.from_file(path)
        assert space.components
    scopes = sorted(p.stem for p in (ROOT / "examples/scopes").glob("*.yaml"))
    assert scopes == ["emodarts", "lstm_att_only", "lstm_only", "rnn_att_only", "rnn_only"]


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        SearchSpace.from_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: [unclosed")
    with pytest.raises(ValueError, match="bad.yaml"):
        SearchSpace.from_file(bad)


def test_reductions_follow_darts_and_cell_kinds():
    space = SearchSpace(input_shape=(1, 16, 16), num_classes=2,
                        components=[cnn_component(cells=4)])
    assert space.components[0].reduction_cells() == [1, 2]
    assert space.components[0].cell_kinds() == ["normal", "reduce"]
    net = space.build_supernet()
    assert net.components["cnn"].out_shape == (2 * 4 * 4, 4, 4)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 2)


def test_input_shape_mismatch_is_a_clear_error():
    net = SearchSpace(input_shape=(1, 8, 8), num_classes=2,
                      components=[cnn_component()]).build_supernet()
    with pytest.raises(ValueError, match="input_shape"):
        net(torch.randn(2, 1, 9, 8))


def test_user_handover_is_pluggable():
    class MaxOverTime(torch.nn.Module):
        def forward(self, x):
            return x.amax(dim=(2, 3))

    @register_handover("test_max_pool_all")
    def factory(in_shape):
        """Global max pool."""
        return MaxOverTime()

    try:
        assert "test_max_pool_all" in [h.name for h in list_handovers()]
        space = SearchSpace(input_shape=(1, 8, 8), num_classes=3,
                            components=[cnn_component(handover="test_max_pool_all")])
        net = space.build_supernet()
        assert net.feature_shape == (2 * 16,)  # 2 nodes x (4 channels doubled twice)
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_handover("test_max_pool_all")(factory)
    finally:
        _HANDOVERS.pop("test_max_pool_all", None)


def test_wrong_handover_for_shape_is_reported():
    space = SearchSpace(input_shape=(1, 8, 8), num_classes=3,
                        components=[cnn_component(handover="mean_over_time")])
    with pytest.raises(ValueError, match="component 'cnn': hand-over 'mean_over_time'"):
        space.build_supernet()


def test_partial_channels_must_divide_width():
    with pytest.raises(ValidationError, match="partial_channels"):
        SearchSpace(input_shape=(1, 8, 8), num_classes=2,
                    components=[cnn_component(channels=6, partial_channels=4)])


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("path", ["examples/demo.yaml", "examples/darts_cifar10.yaml"])
def test_size_estimate_counts_what_is_built(path):
    """The size guard's estimate (meta-device op counts times their multiplicity) is exact:
    it matches the supernet as built, and the derived model with overrides."""
    from nasspeech.space.size import derived_size, supernet_size

    space = SearchSpace.from_file(ROOT / path)
    net = space.build_supernet()
    size = supernet_size(space.components, space.input_shape, space.classifier.hidden,
                         space.num_classes)
    alphas = sum(a.numel() for a in net.alpha_parameters())
    assert size.total_parameters == count(net) - alphas
    assert size.parameters["head"] == count(net.classifier)
    genotype = net.genotype()
    overrides = {space.components[0].name: {"channels": 6, "cells": 4}}
    model = space.derive(genotype, overrides=overrides)
    derived = derived_size(space.components, space.input_shape, space.classifier.hidden,
                           space.num_classes, genotype, overrides)
    assert derived.total_parameters == count(model)


def test_strict_fields_still_take_plain_yaml(tmp_path):
    """Controls for the strict checks (tests/bad_inputs/test_space.py): integers, YAML merge
    keys overriding merged values, a hand-over's own options and float dropouts still load."""
    @register_handover("test_scaled_pool")
    def scaled(in_shape, scale: float = 1.0):
        """Global average pool times ``scale``."""
        class Pool(torch.nn.Module):
            def forward(self, x):
                return scale * x.mean(dim=(2, 3))
        return Pool()

    try:
        (tmp_path / "s.yaml").write_text(
            "defaults: &d {family: cnn, ops: [sep_conv_3x3, none], cells: 2, nodes: 2}\n"
            "name: s\ninput_shape: [1, 8, 8]\nnum_classes: 2\n"
            "classifier: {hidden: [8], dropout: 0}\n"
            "components:\n  - <<: *d\n    name: cnn\n    nodes: 1\n    channels: 2\n"
            "    handover: {name: test_scaled_pool, options: {scale: 0.5}}\n")
        data = load_mapping(tmp_path / "s.yaml")
        data.pop("defaults")
        space = SearchSpace.model_validate(data)
        assert space.components[0].nodes == 1  # the explicit key wins over the merged one
        assert space.classifier.dropout == 0.0
        assert space.build_supernet()(torch.randn(2, 1, 8, 8)).shape == (2, 2)
    finally:
        _HANDOVERS.pop("test_scaled_pool", None)
