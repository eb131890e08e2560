"""Draw every cell of every component of a genotype in one figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import networkx as nx
from matplotlib.figure import Figure

from nasspeech.genotype.cell import ComponentGenotype
from nasspeech.genotype.graph import cell_graph
from nasspeech.plots._common import plt, save


class HasComponents(Protocol):
    """A :class:`~nasspeech.genotype.Genotype` (what the plot reads of it)."""

    @property
    def components(self) -> Sequence[ComponentGenotype]: ...

_COLOURS = {"input": "#9ecae1", "intermediate": "#fdd0a2", "output": "#a1d99b"}


def _positions(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    inter = [n for n, d in g.nodes(data=True) if d["kind"] == "intermediate"]
    pos = {"c_{k-2}": (0.0, 1.0), "c_{k-1}": (0.0, -1.0), "c_{k}": (len(inter) + 1.0, 0.0)}
    for i, n in enumerate(inter):
        pos[n] = (i + 1.0, 0.8 if i % 2 == 0 else -0.8)
    return pos


def plot_labels(g: nx.DiGraph) -> dict[str, str]:
    """Node labels as drawn: the genotype's node numbers, inputs with their names too."""
    return {n: f"{n}\n({d['index']})" if d["kind"] == "input" else n
            for n, d in g.nodes(data=True)}


def plot_genotype(genotype: HasComponents, path: str | Path | None = None,
                  title: str | None = None) -> Figure:
    """One panel per cell kind per component (like Fig. 6 of the emoDARTS paper)."""
    panels = [(c, kind) for c in genotype.components for kind in c.cells]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (comp, kind) in zip(axes[0], panels):
        g = cell_graph(comp.cells[kind])
        pos = _positions(g)
        colours = [_COLOURS[d["kind"]] for _, d in g.nodes(data=True)]
        nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=900,
                               edgecolors="#333333")
        nx.draw_networkx_labels(g, pos, labels=plot_labels(g), ax=ax, font_size=8)
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=12,
                               connectionstyle="arc3,rad=0.12", node_size=900)
        labels = {(u, v): d["op"] for u, v, d in g.edges(data=True) if d["op"] != "concat"}
        nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, ax=ax, font_size=7,
                                     connectionstyle="arc3,rad=0.12")
        label = kind if kind == "cell" else f"{kind} cell"
        ax.set_title(f"{comp.name} ({comp.family}) - {label}")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save(fig, path)
    return fig
