"""A plugin-defined op family end to end: the example plugin ``nasspeech-tdnn`` adds the
``tdnn`` family (1-D convolutions over (batch, channels, time)) with its hand-overs and ops;
a space composing a cnn and a tdnn component is searched, derived and retrained."""

import sys
import warnings
from pathlib import Path

import pytest
import torch

from nasspeech.registry import FAMILIES, REGISTRY, OpRegistry, get_family
from nasspeech.registry.plugins import load_plugins
from nasspeech.search import Architect, search_step, weight_step
from nasspeech.space import HANDOVERS, SearchSpace

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "nasspeech-tdnn"


@pytest.fixture
def tdnn(monkeypatch):
    """The tdnn plugin imported (registering into the global registries), then forgotten."""
    REGISTRY.ensure_loaded()  # installed plugins first: they stay
    before = {r: r.snapshot() for r in (FAMILIES, REGISTRY, HANDOVERS)}
    monkeypatch.syspath_prepend(str(PLUGIN))
    import nasspeech_tdnn.family  # noqa: F401  (registers the family, hand-overs, ops)

    yield get_family("tdnn")
    for r, snapshot in before.items():
        r.restore(snapshot)
    for name in [m for m in sys.modules if m.startswith("nasspeech_tdnn")]:
        del sys.modules[name]


def declare_plugin(root: Path, dist: str, module: str) -> None:
    """An installed-looking ``dist`` whose ``nasspeech.ops`` entry point is ``module``."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nasspeech.ops]\nops = {module}\n")


def space() -> SearchSpace:
    return SearchSpace(name="cnn_tdnn", input_shape=(1, 8, 12), num_classes=3, components=[
        dict(name="cnn", family="cnn", ops=["sep_conv_3x3", "max_pool_3x3", "skip_connect",
                                            "none"], cells=2, nodes=2, channels=4),
        dict(name="tdnn", family="tdnn", ops=["tdnn_3", "tdnn_3_d2", "skip_connect", "none"],
             cells=2, nodes=2, channels=8),
    ])


def batch(g: torch.Generator, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, 8, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_plugin_family_is_searched_derived_and_retrained(tdnn):
    assert tdnn.source == "user:nasspeech_tdnn.family"
    s = space()
    assert s.component("tdnn").cell_kinds() == ["cell"]
    supernet = s.build_supernet()
    tdnn_in = supernet.components["tdnn"].in_shape
    assert tdnn_in == (32 * 2, 3)  # the cnn output (C=32, F=2, T=3) folded: hand-over by rank
    assert tuple(supernet.feature_shape) == (8,)  # the family's default hand-over to the head

    # search: real DARTS steps through nasspeech.search (second order)
    g = torch.Generator().manual_seed(0)
    architect = Architect(supernet, order=2)
    w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=0.05, momentum=0.9)
    before = supernet.named_alphas()["tdnn.cell"].detach().clone()
    for _ in range(3):
        result = search_step(supernet, architect, w_opt, batch(g), batch(g), lr=0.05)
        assert torch.isfinite(torch.tensor([result.loss, result.alpha_loss])).all()
    assert not torch.equal(before, supernet.named_alphas()["tdnn.cell"])

    # derive: the genotype keeps tdnn ops (never `none`), and survives JSON
    genotype = supernet.genotype()
    comp = genotype.component("tdnn")
    assert comp.family == "tdnn" and set(comp.ops()) <= {"tdnn_3", "tdnn_3_d2", "skip_connect"}
    genotype = type(genotype).from_json(genotype.to_json())
    model = s.derive(genotype, drop_path=0.2)

    # retrain: the derived model learns a fixed batch
    x, y = batch(g, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = [weight_step(model, opt, (x, y)).loss for _ in range(8)]
    assert losses[-1] < losses[0]
    model.eval()
    assert model(x[:3]).shape == (3, 3)


def test_plugin_family_loads_through_the_entry_point(tdnn, tmp_path, monkeypatch):
    """The loader smoke-tests the plugin's ops against its own family's contract."""
    # forget the import of the fixture: the entry point imports the module again
    for name in [m for m in sys.modules if m.startswith("nasspeech_tdnn")]:
        del sys.modules[name]
    FAMILIES.remove("tdnn")
    HANDOVERS.remove("tdnn_fold_frequency")
    HANDOVERS.remove("tdnn_mean_over_time")
    declare_plugin(tmp_path, "nasspeech-tdnn", "nasspeech_tdnn.family")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = OpRegistry()
    registry._loaded = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no op of the plugin is rejected
        assert "nasspeech-tdnn" in load_plugins(registry)
    assert get_family("tdnn").source == "nasspeech-tdnn"
    assert {op.name for op in registry.list("tdnn")} == {"tdnn_3", "tdnn_3_d2", "skip_connect",
                                                         "none"}
    assert registry.get("tdnn", "tdnn_3").source == "nasspeech-tdnn"


def test_a_family_plugin_that_breaks_leaves_no_family_behind(tmp_path, monkeypatch):
    (tmp_path / "halfway.py").write_text(
        "from nasspeech import Family, register_family\n"
        "class Half(Family):\n    name = 'halfway'\n    rank = 2\n"
        "register_family(Half)\nraise RuntimeError('broken after its family')\n")
    declare_plugin(tmp_path, "halfway", "halfway")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = OpRegistry()
    registry._loaded = True
    with pytest.warns(UserWarning, match="halfway.*broken after its family"):
        load_plugins(registry)
    assert "halfway" not in FAMILIES
    sys.modules.pop("halfway", None)
