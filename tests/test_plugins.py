"""Entry-point plugins: fake distributions on sys.path (no pip), broken plugins, the autoload
switch, and the installed example plugin ``nasspeech-seqplus``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

from nasspeech.registry import (
    Operation,
    OpRegistry,
    PluginWarning,
    UnknownOpError,
    expected_shape,
    get_op,
)
from nasspeech.registry.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]


GOOD_OPS = """
    import torch
    from torch import nn
    from nasspeech import register_op

    class Scale(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(channels))

        def forward(self, x):
            return x * self.weight

    @register_op("seq", "{prefix}_scale")
    def scale(channels, stride=1):
        '''Per-channel scaling.'''
        return Scale(channels)
"""

RAISING = """
    from torch import nn
    from nasspeech import register_op

    register_op("seq", "{prefix}_early")(lambda channels, stride=1: nn.Identity())
    raise RuntimeError("plugin module is broken")
"""

WRONG_SHAPE = """
    from torch import nn
    from nasspeech import register_op

    register_op("seq", "{prefix}_halves")(lambda channels, stride=1: nn.Linear(channels, 2))
    register_op("seq", "{prefix}_ok")(lambda channels, stride=1: nn.Identity())
"""

CALLABLE_TARGET = """
    from torch import nn
    from nasspeech import register_op

    def register():
        register_op("cnn", "{prefix}_id", parametric=False)(
            lambda channels, stride=1: nn.MaxPool2d(1, stride)
        )
"""


EXITS = """
    import sys
    from torch import nn
    from nasspeech import register_op

    register_op("seq", "{prefix}_early")(lambda channels, stride=1: nn.Identity())
    sys.exit(3)
"""

DUPLICATE = """
    from torch import nn
    from nasspeech import register_op

    register_op("seq", "lstm_1")(lambda channels, stride=1: nn.Identity())  # taken: built-in
    register_op("seq", "{prefix}_ok")(lambda channels, stride=1: nn.Identity())
"""

def make_plugin(root: Path, dist: str, module: str, source: str, target: str = "") -> None:
    """Write an importable ``module`` and an installed-looking ``dist`` declaring it as a
    ``nasspeech.ops`` entry point, as pip would (``<name>-<version>.dist-info``)."""
    (root / f"{module}.py").write_text(textwrap.dedent(source.format(prefix=module)))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nasspeech.ops]\nops = {target or module}\n")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """tmp_path on sys.path; fake plugin modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def builtins_only() -> OpRegistry:
    """A fresh registry holding the built-in ops only (plugins are loaded by the test)."""
    import nasspeech.ops  # noqa: F401  (registers the built-ins into the global registry)
    from nasspeech.registry import REGISTRY

    registry = OpRegistry()
    for op in list(REGISTRY._ops.values()):
        if op.source == "built-in":
            registry.add(op)
    registry._loaded = True
    return registry


def load_warning(registry: OpRegistry, dist: str) -> tuple[list[str], list[str]]:
    """Load the plugins into ``registry``: the loaded sources and the warnings naming ``dist``."""
    with pytest.warns(PluginWarning) as record:
        loaded = load_plugins(registry)
    return loaded, [str(w.message) for w in record if dist in str(w.message)]


def sources(registry: OpRegistry) -> dict[str, str]:
    return {op.key: op.source for op in registry._ops.values()}


def test_good_plugin_ops_appear_with_their_distribution(plugin_dir):
    make_plugin(plugin_dir, "fake-plugin", "fakegood", GOOD_OPS)
    registry = OpRegistry()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        loaded = load_plugins(registry)
    assert "fake-plugin" in loaded
    assert sources(registry)["seq/fakegood_scale"] == "fake-plugin"
    op = registry._ops[("seq", "fakegood_scale")]
    assert op.description == "Per-channel scaling."
    assert tuple(op.build(3)(torch.randn(2, 4, 3)).shape) == (2, 4, 3)
    # the module is imported now; loading into another registry still adds its ops
    again = OpRegistry()
    load_plugins(again)
    assert again._ops[("seq", "fakegood_scale")] is op


def test_callable_entry_point_is_called(plugin_dir):
    make_plugin(plugin_dir, "fake-callable", "fakecall", CALLABLE_TARGET, "fakecall:register")
    registry = OpRegistry()
    load_plugins(registry)
    assert sources(registry)["cnn/fakecall_id"] == "fake-callable"


def test_plugin_calling_sys_exit_is_skipped_and_named(plugin_dir):
    make_plugin(plugin_dir, "fake-exits", "fakeexits", EXITS)
    make_plugin(plugin_dir, "fake-good-2", "fakeok2", GOOD_OPS)
    registry = builtins_only()
    loaded, messages = load_warning(registry, "fake-exits")  # does not exit the process
    assert messages == [("plugin 'fake-exits' (entry point ops = fakeexits) failed to load and "
                         "was skipped: it called sys.exit(3) while loading")]
    assert "fake-exits" not in loaded and "fake-good-2" in loaded
    assert "seq/fakeexits_early" not in sources(registry)
    with pytest.raises(UnknownOpError, match=r"plugin 'fake-exits' failed to load: it called "
                                             r"sys.exit\(3\)"):
        registry.get("seq", "fakeexits_early")


def test_duplicate_name_drops_only_that_op(plugin_dir):
    make_plugin(plugin_dir, "fake-dup", "fakedup", DUPLICATE)
    registry = builtins_only()
    loaded, messages = load_warning(registry, "fake-dup")
    assert len(messages) == 1
    assert "op seq/lstm_1 was not registered: built-in already registers it" in messages[0]
    assert "fake-dup" in loaded
    ops = sources(registry)
    assert ops["seq/lstm_1"] == "built-in" and ops["seq/fakedup_ok"] == "fake-dup"


def test_a_plugin_problem_is_reported_once_per_process(plugin_dir):
    make_plugin(plugin_dir, "fake-once", "fakeonce", RAISING)
    with pytest.warns(PluginWarning, match="fake-once"):
        load_plugins(OpRegistry())
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        load_plugins(OpRegistry())  # the same problem again: no second warning


def test_plugin_that_fails_to_import_is_reported_and_skipped(plugin_dir):
    make_plugin(plugin_dir, "fake-good", "fakeok", GOOD_OPS)
    make_plugin(plugin_dir, "fake-broken", "fakebroken", RAISING)
    registry = OpRegistry()
    loaded, messages = load_warning(registry, "fake-broken")
    assert len(messages) == 1
    assert "entry point ops = fakebroken" in messages[0]
    assert "RuntimeError: plugin module is broken" in messages[0]
    assert "fake-broken" not in loaded and "fake-good" in loaded
    ops = sources(registry)
    assert "seq/fakebroken_early" not in ops  # registered before the error: dropped too
    assert ops["seq/fakeok_scale"] == "fake-good"


def test_op_with_wrong_output_shape_is_rejected_by_name(plugin_dir):
    make_plugin(plugin_dir, "fake-shapes", "fakeshapes", WRONG_SHAPE)
    make_plugin(plugin_dir, "fake-fine", "fakefine", GOOD_OPS)
    registry = OpRegistry()
    _, messages = load_warning(registry, "fake-shapes")
    assert len(messages) == 1
    assert "op seq/fakeshapes_halves was rejected" in messages[0]
    assert "expected (5, 5, 4)" in messages[0]
    ops = sources(registry)
    assert "seq/fakeshapes_halves" not in ops
    assert ops["seq/fakeshapes_ok"] == "fake-shapes"  # its sibling is kept
    assert ops["seq/fakefine_scale"] == "fake-fine"


OVERRIDES_BADLY = """
    from torch import nn
    from nasspeech import register_op

    register_op("seq", "target", override=True)(lambda channels, stride=1: nn.Linear(1, 1))
"""


def test_rejected_override_puts_the_original_back(plugin_dir):
    make_plugin(plugin_dir, "fake-override", "fakeoverride", OVERRIDES_BADLY)
    registry = OpRegistry()
    original = Operation("seq", "target", lambda channels, stride=1: nn.Identity())
    registry.add(original)
    with pytest.warns(PluginWarning, match=r"fake-override.*op seq/target was rejected"):
        load_plugins(registry)
    assert registry._ops[("seq", "target")] is original


def _run(args: list[str], env_extra: dict[str, str], plugin_path: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k != "NASSPEECH_NO_PLUGINS"}
    env.update(env_extra)
    if plugin_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_path),
                                                          env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, *args], check=False, env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def cli_json(tmp_path_factory):
    """``python -m nasspeech ops --json`` run once, with a good and a broken fake plugin
    installed next to the real ones: (listed ops by (family, name), stderr)."""
    root = tmp_path_factory.mktemp("cli_plugins")
    make_plugin(root, "fake-cli", "fakecli", GOOD_OPS)
    make_plugin(root, "fake-cli-broken", "fakeclibroken", RAISING)
    result = _run(["-m", "nasspeech", "ops", "--json"], {}, root)
    assert result.returncode == 0, result.stderr
    return {(o["family"], o["name"]): o for o in json.loads(result.stdout)}, result.stderr


def test_cli_lists_plugin_ops_and_reports_broken_plugins(cli_json):
    ops, stderr = cli_json
    assert ops[("seq", "fakecli_scale")]["source"] == "fake-cli"
    assert ops[("seq", "lstm_att_1")]["source"] == "built-in"
    assert "plugin 'fake-cli-broken' (entry point ops = fakeclibroken)" in stderr
    assert ("seq", "fakeclibroken_early") not in ops
    # one concise line per problem, naming the plugin; no internal source path
    lines = [line for line in stderr.splitlines() if "fake-cli-broken" in line]
    assert lines == [("nasspeech: warning: plugin 'fake-cli-broken' (entry point ops = "
                      "fakeclibroken) failed to load and was skipped: RuntimeError: plugin "
                      "module is broken")]
    assert "registry.py" not in stderr and "load_plugins" not in stderr


def test_env_var_disables_autoload(plugin_dir, monkeypatch):
    """A fresh registry loads built-ins and plugins on first use: not with the env var."""
    make_plugin(plugin_dir, "fake-env", "fakeenv", GOOD_OPS)
    monkeypatch.setenv("NASSPEECH_NO_PLUGINS", "1")
    registry = builtins_only()
    assert "seq/fakeenv_scale" not in sources(registry)
    monkeypatch.delenv("NASSPEECH_NO_PLUGINS")
    registry = OpRegistry()  # control: the same plugin loads without it
    registry.ensure_loaded()
    assert sources(registry)["seq/fakeenv_scale"] == "fake-env"


def test_set_plugin_autoload_false_in_a_fresh_process(tmp_path):
    """A whole process that calls set_plugin_autoload(False) before first use sees only the
    built-in ops (the positive case is the CLI run above)."""
    make_plugin(tmp_path, "fake-off", "fakeoff", GOOD_OPS)
    code = (
        "import nasspeech\n"
        "nasspeech.set_plugin_autoload(False)\n"
        "print(sorted({op.source for op in nasspeech.list_ops()}))"
    )
    result = _run(["-c", code], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['built-in']"


# -- the example plugin shipped in plugins/nasspeech-seqplus ----------------------------------

SEQPLUS_OPS = ("gru_1", "gru_2", "transformer_1")


def _seqplus_installed() -> bool:
    try:
        metadata.distribution("nasspeech-seqplus")
    except metadata.PackageNotFoundError:
        return False
    return True


needs_seqplus = pytest.mark.skipif(
    not _seqplus_installed(),
    reason="nasspeech-seqplus is not installed (pip install -e plugins/nasspeech-seqplus)",
)


@needs_seqplus
def test_cli_lists_installed_seqplus_ops(cli_json):
    ops, stderr = cli_json
    assert "nasspeech-seqplus" not in stderr, stderr  # no warning about it
    for name in SEQPLUS_OPS:
        assert ops[("seq", name)]["source"] == "nasspeech-seqplus"
        assert ops[("seq", name)]["description"]


@needs_seqplus
@pytest.mark.parametrize("name", SEQPLUS_OPS)
@pytest.mark.parametrize("width", [4, 16, 5])
def test_seqplus_ops_keep_the_contract(name, width):
    op = get_op("seq", name)
    assert op.source == "nasspeech-seqplus"
    module = op.build(width)
    for batch in (1, 2, 3, 17):
        x = torch.randn(batch, 5, width, requires_grad=True)
        out = module(x)
        assert tuple(out.shape) == expected_shape("seq", tuple(x.shape))
        (out * torch.randn_like(out)).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        for p in module.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
    module.eval()
    x = torch.randn(17, 5, width)
    perm = torch.randperm(17)
    with torch.no_grad():
        out = module(x)
        torch.testing.assert_close(module(x[perm]), out[perm], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(module(x[:3]), out[:3], rtol=1e-4, atol=1e-5)


@needs_seqplus
def test_seqplus_ops_work_inside_a_search():
    """One first-order search step over a cnn -> seq space whose seq ops come from the plugin."""
    from nasspeech import Architect, SearchSpace
    from nasspeech.search import search_step

    torch.manual_seed(0)
    space = SearchSpace(
        name="seqplus", input_shape=(1, 8, 6), num_classes=3,
        components=[
            {"name": "cnn", "family": "cnn", "ops": ["skip_connect", "avg_pool_3x3"],
             "cells": 1, "nodes": 1, "channels": 2, "reductions": [],
             "handover": "fold_frequency"},
            {"name": "seq", "family": "seq", "ops": [*SEQPLUS_OPS, "skip_connect", "none"],
             "cells": 1, "nodes": 2, "channels": 8, "handover": "mean_over_time"},
        ],
    )
    supernet = space.build_supernet()
    architect = Architect(supernet, order=1)
    w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.025, momentum=0.9)
    alphas = [a.detach().clone() for a in supernet.alpha_parameters()]
    x, y = torch.randn(4, 1, 8, 6), torch.randint(0, 3, (4,))
    search_step(supernet, architect, w_opt, (x[:2], y[:2]), (x[2:], y[2:]), lr=0.025)
    assert any(not torch.equal(a, b) for a, b in zip(alphas, supernet.alpha_parameters()))
    seq_ops = {e.op for node in supernet.genotype().component("seq").cells["cell"].nodes
               for e in node}
    assert seq_ops <= {*SEQPLUS_OPS, "skip_connect"}
    model = space.derive(supernet.genotype())
    assert model(x).shape == (4, 3)
