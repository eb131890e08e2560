"""Collapse guard, partial channels (PC-DARTS) memory, and a NaN loss keeping the checkpoint."""

from pathlib import Path

import pytest
import torch
import yaml

from nasspeech.config import CollapseConfig, RunConfig
from nasspeech.search import Architect, search_step
from nasspeech.search.techniques.collapse import AuxSkip, CollapseGuard, parameter_free_share
from nasspeech.space import SearchSpace
from nasspeech.workflow.checkpoint import load_checkpoint
from nasspeech.workflow.datasets import load_run_data
from nasspeech.workflow.rundir import WorkflowError
from nasspeech.workflow.search import run_search

ROOT = Path(__file__).resolve().parents[2]


def seq_space(**kw) -> SearchSpace:
    comp = dict(name="seq", family="seq", ops=["lstm_1", "rnn_1", "skip_connect", "none"],
                cells=2, nodes=3, channels=8)
    comp.update(kw)
    return SearchSpace(name="s", input_shape=(6, 8), num_classes=4, components=[comp])


def collapsed_supernet():
    net = seq_space().build_supernet()
    ops = net.space.components[0].ops
    with torch.no_grad():
        for a in net.alpha_parameters():
            a.zero_()
            a[:, ops.index("skip_connect")] = 5.0  # every edge prefers the identity
    return net


def test_collapse_warning_and_early_stop_fire_on_a_collapsed_genotype():
    net = collapsed_supernet()
    genotype = net.genotype()
    report = CollapseGuard(CollapseConfig()).check(genotype, 4, net.alpha_softmax())
    assert report.shares["seq"] == 1.0 and report.shifts["seq"] > 2.0
    assert any("component 'seq' is collapsing" in w for w in report.warnings)
    assert report.stop is None  # no remedy configured
    stop = CollapseGuard(CollapseConfig(remedy="early_stop", max_skip=2)).check(genotype, 4)
    assert stop.stop and "DARTS+ early stop" in stop.stop


def test_no_warning_while_the_alphas_are_near_uniform():
    """At epoch 1 the kept ops are picked by noise: a genotype that looks collapsed must not
    warn until the alphas have moved away from uniform."""
    net = seq_space().build_supernet()
    ops = net.space.components[0].ops
    with torch.no_grad():
        for a in net.alpha_parameters():
            a.normal_(0.0, 1e-3)
            a[:, ops.index("skip_connect")] = 0.01  # skip wins every edge, by a hair
    genotype = net.genotype()
    guard = CollapseGuard(CollapseConfig())
    report = guard.check(genotype, 0, net.alpha_softmax())
    assert parameter_free_share(genotype)["seq"] == 1.0
    assert report.shifts["seq"] < 0.05 and not report.warnings
    assert guard.check(genotype, 0).warnings  # without the alphas it cannot tell
    never = CollapseGuard(CollapseConfig(min_alpha_shift=0.0))
    assert never.check(genotype, 0, net.alpha_softmax()).warnings  # 0 turns the margin off


def test_no_warning_on_a_healthy_genotype():
    net = seq_space().build_supernet()
    ops = net.space.components[0].ops
    with torch.no_grad():
        for a in net.alpha_parameters():
            a.zero_()
            a[:, ops.index("lstm_1")] = 5.0
    report = CollapseGuard(CollapseConfig()).check(net.genotype(), 0)
    assert report.shares["seq"] == 0.0 and not report.warnings


def test_aux_skip_adds_decaying_identity():
    net = seq_space().build_supernet().eval()
    x = torch.randn(2, 6, 8)
    ref = net(x)
    aux = AuxSkip(net, beta0=1.0)
    assert not torch.allclose(net(x), ref)
    assert aux.set_epoch(10, 10) == 0.0
    torch.testing.assert_close(net(x), ref)
    aux.remove()


def saved_activation_bytes(space: SearchSpace) -> int:
    """Bytes still allocated after a forward pass (what autograd keeps for backward), from the
    CPU allocator's own events, with PyTorch's kernels (what a GPU keeps: the compiled CPU max
    pooling keeps one byte per output where PyTorch keeps an int64 index)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    from nasspeech.kernels import reference_kernels

    torch.manual_seed(0)
    net = space.build_supernet()
    x = torch.randn(4, 1, 16, 16)
    with reference_kernels(), profile(activities=[ProfilerActivity.CPU],
                                      profile_memory=True) as prof:
        out = net(x).sum()
    sizes: list[int] = []

    def walk(event) -> None:
        if event.tag == _EventType.Allocation:
            sizes.append(event.extra_fields.alloc_size)
        for child in event.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    del out
    return sum(sizes)


def test_partial_channels_lowers_activation_memory():
    comp = dict(name="cnn", family="cnn", ops=["sep_conv_3x3", "max_pool_3x3", "skip_connect",
                                               "none"], cells=3, nodes=2, channels=8)
    full = SearchSpace(name="f", input_shape=(1, 16, 16), num_classes=4, components=[comp])
    pc = SearchSpace(name="p", input_shape=(1, 16, 16), num_classes=4,
                     components=[{**comp, "partial_channels": 4}])
    assert saved_activation_bytes(pc) < 0.6 * saved_activation_bytes(full)
    net = pc.build_supernet()  # and a PC-DARTS search step works
    arch = Architect(net, order=1)
    opt = torch.optim.SGD(net.weight_parameters(), 0.05)
    batch = (torch.randn(4, 1, 16, 16), torch.randint(0, 4, (4,)))
    assert search_step(net, arch, opt, batch, batch, lr=0.05).count == 4


def tiny_run(tmp_path: Path, **search):
    """The demo config on 6 tiny synthetic speakers, 3 folds, with ``search`` overrides."""
    cfg = yaml.safe_load((ROOT / "examples/demo.yaml").read_text())
    cfg["search"].update(search)
    cfg["data"].update(folds=3, cache_dir=str(tmp_path / "cache"))
    cfg["data"]["demo"].update(n_speakers=6, clips_per_emotion=3, duration=1.0)
    cfg["data"]["features"].update(duration=1.0)
    config = RunConfig.model_validate(cfg)
    return config, load_run_data(config, progress=False)


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    config, data = tiny_run(tmp_path, epochs=3, batch_size=16)
    run_search(config, data, 0, tmp_path / "run", progress=False, stop_after=1)
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    data.x[:] = float("nan")  # poison the data: the next epoch's loss is NaN
    with pytest.raises(WorkflowError, match="epoch 2.*last good checkpoint"):
        run_search(config, data, 0, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == good


def test_ctrl_c_keeps_the_checkpoint_and_resumes(tmp_path, monkeypatch):
    import nasspeech.search.recipe as S  # the search step the workflow runs

    config, data = tiny_run(tmp_path, epochs=3, batch_size=256)  # one step per epoch
    real_step, calls = S.search_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # in epoch 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(S, "search_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_search(config, data, 0, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["epoch"] == 1  # the checkpoint after the last finished epoch is kept
    monkeypatch.setattr(S, "search_step", real_step)
    resumed = run_search(config, data, 0, tmp_path / "run", resume=True, progress=False)
    assert resumed.epochs_run == 3 and (tmp_path / "run" / "genotype.json").is_file()


def test_a_lasting_collapse_warning_is_printed_once(tmp_path, monkeypatch, capsys):
    import nasspeech.workflow.search as S
    from nasspeech.search.techniques.collapse import CollapseReport

    config, data = tiny_run(tmp_path, epochs=3, batch_size=256)

    class AlwaysCollapsed:
        def __init__(self, _config):
            pass

        def check(self, genotype, epoch, alphas=None):
            warning = f"epoch {epoch + 1}: component 'cnn' is collapsing"
            return CollapseReport({"cnn": 1.0}, {"cnn": 0}, [warning],
                                  new_warnings=[warning] if epoch == 0 else [])

    monkeypatch.setattr(S, "CollapseGuard", AlwaysCollapsed)
    run_search(config, data, 0, tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert err.count("is collapsing") == 1 and "epoch 1:" in err
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert sum("is collapsing" in line for line in log) == 3  # every epoch's is logged


def test_a_flipping_share_is_warned_at_its_first_and_its_new_highs(monkeypatch):
    import nasspeech.search.techniques.collapse as C

    shares = iter([0.5, 0.75, 1.0, 0.75, 1.0, 0.75])
    monkeypatch.setattr(C, "parameter_free_share", lambda g: {"seq": next(shares)})
    monkeypatch.setattr(C, "skip_counts", lambda g: {"seq": 0})
    guard = C.CollapseGuard(CollapseConfig(min_alpha_shift=0.0))
    reports = [guard.check(None, epoch) for epoch in range(6)]
    assert [bool(r.warnings) for r in reports] == [False, True, True, True, True, True]
    assert [len(r.new_warnings) for r in reports] == [0, 1, 1, 0, 0, 0]
