"""Bad inputs of the space area (space configs and their files, genotypes, derived-model
overrides, op plugins, the ``params`` command): each a clear error naming the field, op or
plugin, never a crash, hang, traceback or silence. Genotypes that are merely unusual warn
instead (tests/space/test_genotype.py)."""

from __future__ import annotations

import copy
import importlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from nasspeech.genotype import Genotype, GenotypeError
from nasspeech.registry import OpRegistry, PluginWarning, UnknownOpError
from nasspeech.registry.plugins import load_plugins
from nasspeech.space import SearchSpace
from nasspeech.space.config import ConfigFileError

from .table import Case, check, cli, params

CELL = {"nodes": [[{"source": 0, "op": "sep_conv_3x3"}, {"source": 1, "op": "skip_connect"}],
                  [{"source": 2, "op": "max_pool_3x3"}, {"source": 0, "op": "sep_conv_3x3"}]],
        "concat": [2, 3]}
SPACE = {"name": "tiny", "input_shape": [1, 8, 8], "num_classes": 2, "components": [
    {"name": "cnn", "family": "cnn", "ops": ["sep_conv_3x3", "max_pool_3x3", "skip_connect",
                                             "none"], "cells": 3, "nodes": 2, "channels": 4}]}
GENOTYPE = {"space": "tiny", "components": [
    {"name": "cnn", "family": "cnn", "cells": {"normal": CELL, "reduce": copy.deepcopy(CELL)}}]}

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
name: *h
"""

DUPLICATE_KEY = """\
name: tiny
input_shape: [1, 8, 8]
num_classes: 2
components:
  - {name: cnn, family: cnn, ops: [sep_conv_3x3, none], cells: 3, nodes: 2, channels: 4}
num_classes: 4
"""


def space(**component: Any) -> dict:
    """SPACE with ``component`` fields changed (``_top`` changes top-level fields)."""
    data = copy.deepcopy(SPACE)
    data.update(component.pop("_top", {}))
    data["components"][0].update(component)
    return data


def genotype(change=None) -> dict:
    data = copy.deepcopy(GENOTYPE)
    if change is not None:
        change(data["components"][0]["cells"]["normal"])
    return data


def validate(**component: Any):
    return lambda tmp: SearchSpace.model_validate(space(**component))


def from_text(text: str, name: str = "space.yaml"):
    def run(tmp: Path):
        (tmp / name).write_text(text)
        return SearchSpace.from_file(tmp / name)
    return run


def derive(change=None, **overrides: dict):
    def run(tmp: Path):
        return SearchSpace.model_validate(space()).derive(
            Genotype.model_validate(genotype(change)), overrides=overrides or None)
    return run


def genotype_text(text: str):
    def run(tmp: Path):
        (tmp / "g.json").write_text(text)
        return Genotype.load(tmp / "g.json")
    return run


def write(tmp: Path, name: str, data: dict | str) -> Path:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def params_cli(space_data: dict | str, *args: str, genotype_data: dict | None = None):
    def run(tmp: Path):
        argv = ["params", write(tmp, "space.yaml", space_data), *args]
        if genotype_data is not None:
            argv += ["--genotype", write(tmp, "g.json", json.dumps(genotype_data))]
        return cli(*argv)
    return run


def plugin(tmp: Path, dist: str, source: str, warning: str) -> OpRegistry:
    """Load a fake installed plugin ``dist`` whose module is ``source`` into a new registry;
    it must warn (``warning``: a regex)."""
    module = dist.replace("-", "_")
    (tmp / f"{module}.py").write_text(textwrap.dedent(source))
    info = tmp / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nasspeech.ops]\nops = {module}\n")
    registry = OpRegistry()
    registry._loaded = True  # no autoloading: the plugins are loaded here, warnings caught
    sys.path.insert(0, str(tmp))
    importlib.invalidate_caches()
    try:
        with pytest.warns(PluginWarning, match=warning):
            load_plugins(registry)
    finally:
        sys.path.remove(str(tmp))
        sys.modules.pop(module, None)
    return registry


def plugin_op(dist: str, source: str, op: str, warning: str):
    return lambda tmp: plugin(tmp, dist, source, warning).get("seq", op)


EXITS = """
    import sys
    from torch import nn
    from nasspeech import register_op
    register_op("seq", "exits_op")(lambda channels, stride=1: nn.Identity())
    sys.exit(0)
"""
BATCH_3 = """
    from torch import nn
    from nasspeech import register_op

    class SmallBatches(nn.Module):
        def forward(self, x):
            if x.shape[0] > 3:
                raise RuntimeError("batch too large")
            return x

    register_op("seq", "small_batches")(lambda channels, stride=1: SmallBatches())
"""


def no_node(cell):
    cell["nodes"].append([{"source": 3, "op": "sep_conv_3x3"}])
    cell["concat"].append(4)


CASES = [
    # -- space fields -----------------------------------------------------------------------
    Case("channels_true", validate(channels=True), r"components\.0\.channels.*valid integer",
         ValidationError),
    Case("channels_float", validate(channels=4.0), r"channels.*valid integer", ValidationError),
    Case("cells_string_1e6", validate(cells="1e6"), r"components\.0\.cells.*valid integer",
         ValidationError),
    Case("cells_1e6", validate(cells=1_000_000), r"cells.*less than or equal to 1000",
         ValidationError),
    Case("channels_1e11", validate(channels=10**11), r"channels.*less than or equal to 65536",
         ValidationError),
    Case("cnn_channels_1", validate(channels=1), r"channels 1 is too narrow.*at least 2",
         ValidationError),
    Case("cnn_width_per_mixed_op_1", validate(channels=4, partial_channels=4),
         r"too narrow per mixed op", ValidationError),
    Case("nodes_zero", validate(nodes=0), r"nodes.*greater than or equal to 1", ValidationError),
    Case("top_k_beyond_inputs", validate(top_k=9), r"top_k 9 is more than any node has inputs",
         ValidationError),
    Case("reduction_twice", validate(reductions=[1, 1]), r"reductions lists a cell twice",
         ValidationError),
    Case("bn_affine_string", validate(search_bn_affine="yes"),
         r"search_bn_affine.*valid boolean", ValidationError),
    Case("dropout_nan", validate(_top={"classifier": {"dropout": float("nan")}}),
         r"classifier\.dropout.*finite number", ValidationError),
    Case("dropout_inf", validate(_top={"classifier": {"dropout": float("inf")}}),
         r"classifier\.dropout.*finite number", ValidationError),
    Case("dropout_true", validate(_top={"classifier": {"dropout": True}}),
         r"dropout.*valid number", ValidationError),
    Case("hidden_zero", validate(_top={"classifier": {"hidden": [16, 0]}}),
         r"classifier\.hidden\.1.*greater than or equal to 1", ValidationError),
    Case("hidden_negative", validate(_top={"classifier": {"hidden": [-8]}}),
         r"classifier\.hidden\.0.*greater than or equal to 1", ValidationError),
    Case("input_inf", validate(_top={"input_shape": [1, float("inf"), 8]}),
         r"input_shape\.1.*valid integer", ValidationError),
    Case("input_too_large", validate(_top={"input_shape": [1, 100_000, 100_000]}),
         r"input_shape .* values per sample", ValidationError),
    Case("num_classes_float", validate(_top={"num_classes": 2.0}), r"num_classes.*valid integer",
         ValidationError),
    Case("handover_unknown_option", validate(handover={"name": "global_avg_pool",
                                                       "options": {"dims": 2}}),
         r"hand-over 'global_avg_pool' takes no option 'dims'", ValidationError),
    Case("handover_auto_with_options", validate(handover={"options": {"dims": 2}}),
         r"'auto' takes no options", ValidationError),
    Case("handover_unknown", validate(handover="pool_everything"),
         r"unknown hand-over 'pool_everything'", ValidationError),
    Case("name_with_dot", validate(name="c.nn"), r"component name 'c.nn' must be a short "
         r"identifier", ValidationError),
    Case("name_reserved", validate(name="keys"), r"component name 'keys' is reserved",
         ValidationError),
    Case("op_of_other_family", lambda tmp: SearchSpace.model_validate({
        **SPACE, "components": [{"name": "seq", "family": "seq", "ops": ["sep_conv_3x3", "none"],
                                 "cells": 1, "nodes": 1, "channels": 4}],
        "input_shape": [8, 4]}), r"'sep_conv_3x3' is a cnn op: use it in a cnn component",
         ValidationError),
    Case("supernet_too_large", validate(channels=16384, cells=8),
         r"supernet of space 'tiny' would have .* parameters.*component 'cnn' \(channels 16384",
         ValidationError),
    Case("too_many_op_modules", validate(cells=1000, nodes=32, channels=2),
         r"component 'cnn' .* would hold 1,680,000 candidate-op modules", ValidationError),
    # -- space files --------------------------------------------------------------------------
    Case("yaml_duplicate_key", from_text(DUPLICATE_KEY),
         r"space.yaml: key 'num_classes' appears twice in one mapping \(lines 3 and 6\)",
         ConfigFileError, max_lines=1),
    Case("yaml_alias_bomb", from_text(ALIAS_BOMB),
         r"space.yaml: aliases .* expand the document to more than 100,000 values",
         ConfigFileError, max_lines=1),
    Case("yaml_recursive_alias", from_text("name: &a [1, *a]\n"),
         r"an alias refers to the value that contains it", ConfigFileError, max_lines=1),
    Case("yaml_nested_deep", from_text("name: " + "[" * 3000 + "]" * 3000 + "\n"),
         r"nested too deeply", ConfigFileError, max_lines=1),
    Case("yaml_syntax", from_text("components: [unclosed\n"),
         r"space.yaml, line 2, column 1: not valid YAML", ConfigFileError, max_lines=1),
    Case("yaml_empty", from_text(""), r"space.yaml: the file is empty", ConfigFileError),
    Case("json_duplicate_key", from_text('{"name": "a",\n "name": "b"}', "space.json"),
         r"key 'name' appears twice in one object \(lines 1 and 2\)", ConfigFileError),
    Case("json_nan", from_text('{"classifier": {"dropout": NaN}}', "space.json"),
         r"NaN is not a number a config may hold", ConfigFileError),
    # -- derived models ------------------------------------------------------------------------
    Case("override_bool", derive(cnn={"channels": True}),
         r"overrides\.cnn\.channels must be an integer, got True", ValueError),
    Case("override_1e11", derive(cnn={"channels": 10**11}),
         r"overrides\.cnn\.channels must be in 2\.\.65536", ValueError),
    Case("override_cells_zero", derive(cnn={"cells": 0}), r"overrides\.cnn\.cells must be in 1",
         ValueError),
    Case("derived_too_large", derive(cnn={"channels": 65536, "cells": 20}),
         r"the derived model would have .* parameters", ValueError),
    # -- genotypes -----------------------------------------------------------------------------
    Case("concat_twice", derive(lambda c: c["concat"].append(3)),
         r"concat lists node 3 twice", ValidationError),
    Case("edge_twice", derive(lambda c: c["nodes"][0].append(dict(c["nodes"][0][0]))),
         r"node 2 has the edge 'sep_conv_3x3' from node 0 \(c_\{k-2\}\) twice", ValidationError),
    Case("extra_node", derive(no_node), r"normal cell has 3 nodes, but the space's component has "
         r"nodes: 2", GenotypeError),
    Case("more_than_top_k", derive(lambda c: c["nodes"][1].append({"source": 1,
                                                                   "op": "skip_connect"})),
         r"normal cell, node 3 has 3 inputs, more than the component's top_k: 2", GenotypeError),
    Case("none_edge", derive(lambda c: c["nodes"][0].__setitem__(0, {"source": 0, "op": "none"})),
         r"normal cell, node 2: the edge from node 0 \(c_\{k-2\}\) is 'none'", GenotypeError),
    Case("concat_lengths_differ", derive(lambda c: c["concat"].remove(2)),
         r"its cells must concatenate the same number of nodes", GenotypeError),
    Case("op_of_no_family", derive(lambda c: c["nodes"][1].__setitem__(0, {"source": 2,
                                                                           "op": "lstm_1"})),
         r"node 3: .*'lstm_1' is a seq op", GenotypeError),
    Case("other_space", lambda tmp: SearchSpace.model_validate(space(name="front")).derive(
        Genotype.model_validate(genotype())), r"searched in another space", GenotypeError),
    Case("genotype_duplicate_key", genotype_text('{"space": "a",\n"space": "b"}'),
         r"g.json: key 'space' appears twice", GenotypeError),
    Case("genotype_source_bool", genotype_text(json.dumps(genotype(
        lambda c: c["nodes"][0][0].__setitem__("source", True)))),
         r"g.json: not a valid genotype:.*source: Input should be a valid integer", GenotypeError),
    Case("genotype_missing", lambda tmp: Genotype.load(tmp / "nope.json"),
         r"genotype file not found: .*nope.json", GenotypeError),
    # -- plugins ------------------------------------------------------------------------------
    Case("plugin_sys_exit", plugin_op("fake-exits-table", EXITS, "exits_op",
                                      r"'fake-exits-table' .* failed to load and was skipped"),
         r"plugin 'fake-exits-table' failed to load: it called sys.exit\(0\)", UnknownOpError),
    Case("plugin_op_fails_above_batch_3", plugin_op(
        "fake-batch-table", BATCH_3, "small_batches",
        r"'fake-batch-table' .*: op seq/small_batches was rejected: raised RuntimeError: batch "
        r"too large"),
         r"seq op 'small_batches' is not available: plugin 'fake-batch-table' .* rejected: "
         r"raised RuntimeError: batch too large", UnknownOpError),
    # -- the params command ---------------------------------------------------------------------
    Case("cli_channels_true", params_cli(space(channels=True)),
         r"nasspeech params: error: .*space.yaml does not validate:\s+components\.0\.channels: "
         r"Input should be a valid integer \(got True\)"),
    Case("cli_alias_bomb", params_cli(ALIAS_BOMB), r"aliases .* expand the document",
         max_lines=1),
    Case("cli_duplicate_key", params_cli(DUPLICATE_KEY), r"key 'num_classes' appears twice",
         max_lines=1),
    Case("cli_missing_config", lambda tmp: cli("params", tmp / "nope.yaml"),
         r"config file not found: .*nope.yaml", max_lines=1),
    Case("cli_override_not_int", params_cli(space(), "--override", "cnn.channels=abc",
                                            genotype_data=genotype()),
         r"--override 'cnn.channels=abc': 'abc' is not an integer", max_lines=1),
    Case("cli_override_1e11", params_cli(space(), "--override", "cnn.channels=100000000000",
                                        genotype_data=genotype()),
         r"overrides\.cnn\.channels must be in 2\.\.65536", max_lines=1),
    Case("cli_override_unknown_component", params_cli(space(), "--override", "rnn.cells=3",
                                                      genotype_data=genotype()),
         r"overrides name unknown components \['rnn'\]", max_lines=1),
    Case("cli_override_without_genotype", params_cli(space(), "--override", "cnn.cells=3"),
         r"give --genotype", max_lines=1),
    Case("cli_genotype_extra_node", params_cli(space(), genotype_data=genotype(no_node)),
         r"has 3 nodes, but the space's component has nodes: 2", max_lines=1),
    Case("cli_genotype_other_space", params_cli(space(name="front"), genotype_data=genotype()),
         r"searched in another space", max_lines=1),
    Case("cli_auxiliary_small_maps", params_cli(space(), "--auxiliary",
                                                genotype_data=genotype()),
         r"auxiliary head after cell 2 of component 'cnn' needs feature maps of at least 8x8",
         max_lines=1),
]


@params(CASES)
def test_space_bad_input(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_no_error_prints_the_expanded_input(tmp_path: Path) -> None:
    """The alias bomb's message is short: what an error prints is capped."""
    result = cli("params", write(tmp_path, "space.yaml", ALIAS_BOMB))
    assert result.code == 2 and len(result.stderr) < 300, result.stderr[:1000]
