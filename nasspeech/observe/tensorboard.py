"""TensorBoard event files of search and retrain runs (``log.tensorboard: true`` or
``--tensorboard``), written with ``torch.utils.tensorboard`` into ``<run dir>/tensorboard``.

One event directory per run directory, so ``tensorboard --logdir`` on a cv (or demo) run
directory shows every fold's search, retrain and baseline as runs of one board. Per epoch
(TensorBoard step = 1-based epoch, as in ``log.jsonl``):

* search: ``loss/train``, ``loss/alpha``, ``accuracy/train``, ``accuracy/val`` and ``ua/val``
  (on the alpha half of the search set), ``lr/weights``, ``lr/alphas``, the softmax weight of
  every op on every edge (``alphas/<comp>.<kind>/node<j>_from<i>/<op>``) and its mean over the
  edges (``alpha_mean/...``), with edge normalisation (PC-DARTS) each edge's share of its node
  (``betas/<comp>.<kind>/node<j>_from<i>``), the collapse guard's measures (``collapse/...``), the derived
  genotype as an image (``genotype``, the cell plot of ``genotype.png``) and as JSON text;
  a Custom Scalars layout draws each edge's ops in one chart;
* retrain: ``loss/train``, ``accuracy/train``, ``lr/weights``; at the end ``test/ua`` and
  ``test/wa`` on the held-out speakers (the test set is not looked at during training).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nasspeech.config import RunConfig
from nasspeech.extras import require

TB_DIR = "tensorboard"


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard``, or :class:`~nasspeech.extras.MissingExtraError`."""
    return require("torch.utils.tensorboard", "tensorboard",
                   "TensorBoard logging (log.tensorboard)", "tensorboard")


def with_tensorboard(config: RunConfig, on: bool = True) -> RunConfig:
    """``config`` with ``log.tensorboard`` set to ``on`` (a copy)."""
    return config.model_copy(update={"log": config.log.model_copy(update={"tensorboard": on})})


def edge_names(nodes: int) -> list[str]:
    """Edge labels of a cell in the alphas' row order: ``node2_from0, node2_from1, ...``."""
    return [f"node{j + 2}_from{i}" for j in range(nodes) for i in range(j + 2)]


class TensorBoardLog:
    """Writes one run directory's events; :meth:`open` gives None when logging is off."""

    def __init__(self, run_dir: str | Path, config: RunConfig, purge_step: int | None = None
                 ) -> None:
        writer_cls = require_tensorboard().SummaryWriter
        self.path = Path(run_dir) / TB_DIR
        self.writer = writer_cls(log_dir=str(self.path), purge_step=purge_step, flush_secs=20)
        self.num_classes = config.space.num_classes
        self.title = config.name
        self.sets = {f"{c.name}.{kind}": (list(c.ops), edge_names(c.nodes))
                     for c in config.space.components for kind in c.cell_kinds()}
        self.beta_sets = [f"{c.name}.{kind}" for c in config.space.components
                          if c.uses_edge_normalization() for kind in c.cell_kinds()]
        self._warned = False  # a genotype plot failure is reported once
        self._layout_written = False

    @classmethod
    def open(cls, config: RunConfig, run_dir: str | Path, start_epoch: int = 0
             ) -> TensorBoardLog | None:
        """A log for ``run_dir`` if ``config.log.tensorboard``; a resume after ``start_epoch``
        epochs drops events of later epochs an interrupted run had written."""
        if not config.log.tensorboard:
            return None
        return cls(run_dir, config, purge_step=start_epoch + 1 if start_epoch else None)

    # -- search ---------------------------------------------------------------------------
    def search_epoch(self, record: Mapping[str, Any], alphas: Mapping[str, Sequence],
                     genotype: Any, pred: Any, true: Any, alpha_lr: float,
                     betas: Mapping[str, Sequence[float]] | None = None) -> None:
        """One search epoch: its ``log.jsonl`` record, the alpha softmax per set
        (``{set: [[weight per op] per edge]}``), the derived genotype, the predictions on the
        alpha part of the search set, the alphas' learning rate and, with edge normalisation,
        each edge's share of its node (``{set: [weight per edge]}``)."""
        from nasspeech.metrics import classification_report

        step = int(record["epoch"])
        if not self._layout_written:
            self._layout()
        self._scalars(step, {
            "loss/train": record.get("train_loss"), "loss/alpha": record.get("alpha_loss"),
            "accuracy/train": record.get("train_acc"), "accuracy/val": record.get("val_acc"),
            "ua/val": classification_report(true, pred, range(self.num_classes))["ua"],
            "lr/weights": record.get("lr"), "lr/alphas": alpha_lr,
            "collapse/aux_skip_beta": record.get("aux_skip_beta"),
            "time/epoch_seconds": record.get("seconds"),
            **{f"collapse/parameter_free_share/{k}": v
               for k, v in (record.get("parameter_free_share") or {}).items()},
            **{f"collapse/max_skip_per_cell/{k}": v
               for k, v in (record.get("max_skip_per_cell") or {}).items()},
        })
        for name, weights in alphas.items():
            ops, edges = self.sets.get(name, ([], []))
            for edge, row in zip(edges, weights):
                for op, w in zip(ops, row):
                    self.writer.add_scalar(f"alphas/{name}/{edge}/{op}", float(w), step)
            for k, op in enumerate(ops):
                column = [float(row[k]) for row in weights]
                if column:
                    self.writer.add_scalar(f"alpha_mean/{name}/{op}",
                                           sum(column) / len(column), step)
        for name, weights in (betas or {}).items():
            for edge, w in zip(self.sets.get(name, ([], []))[1], weights):
                self.writer.add_scalar(f"betas/{name}/{edge}", float(w), step)
        if record.get("warnings"):
            self.writer.add_text("collapse/warnings", "\n\n".join(record["warnings"]), step)
        self._genotype(genotype, step)
        self.writer.flush()

    def _genotype(self, genotype: Any, step: int) -> None:
        self.writer.add_text("genotype/json", "```\n" + genotype.to_json() + "\n```", step)
        try:
            fig = genotype.plot(title=f"{self.title}: derived cells after epoch {step}")
            self.writer.add_figure("genotype", fig, step, close=True)
        except Exception as exc:  # noqa: BLE001 - a plot must not stop the search
            if not self._warned:
                print(f"warning: could not draw the genotype for TensorBoard: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
                self._warned = True

    def _layout(self) -> None:
        """Custom Scalars: per alpha set, one chart per edge with a line per op, and the
        per-op mean over the edges."""
        layout: dict[str, dict[str, list]] = {}
        for name, (_, edges) in self.sets.items():
            charts = {"mean over edges": ["Multiline", [rf"^alpha_mean/{re.escape(name)}/"]]}
            for edge in edges:
                charts[edge] = ["Multiline", [rf"^alphas/{re.escape(name)}/{edge}/"]]
            if name in self.beta_sets:
                charts["edge shares (beta)"] = ["Multiline", [rf"^betas/{re.escape(name)}/"]]
            layout[f"alphas {name}"] = charts
        self.writer.add_custom_scalars(layout)
        self._layout_written = True

    # -- retrain --------------------------------------------------------------------------
    def train_epoch(self, record: Mapping[str, Any]) -> None:
        """One retrain epoch from its ``log.jsonl`` record."""
        self._scalars(int(record["epoch"]), {
            "loss/train": record.get("train_loss"), "accuracy/train": record.get("train_acc"),
            "lr/weights": record.get("lr"), "time/epoch_seconds": record.get("seconds")})
        self.writer.flush()  # a run that fails later keeps what it logged

    def train_result(self, metrics: Mapping[str, Any], step: int) -> None:
        """The held-out test result (UA, WA) at the last epoch."""
        self._scalars(step, {"test/ua": metrics.get("ua"), "test/wa": metrics.get("wa")})
        self.writer.add_text("test/metrics", "```\n" + json.dumps(
            {k: metrics.get(k) for k in ("model", "fold", "ua", "wa", "params", "n_test",
                                          "per_class_recall")}, indent=2) + "\n```", step)
        self.writer.flush()

    # -- shared ---------------------------------------------------------------------------
    def _scalars(self, step: int, values: Mapping[str, Any]) -> None:
        for tag, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        self.writer.close()
