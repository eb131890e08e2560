"""Cell genotypes as networkx graphs."""

from __future__ import annotations

import networkx as nx

from nasspeech.genotype.model import CellGenotype


def node_label(index: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index - 2))


def cell_graph(cell: CellGenotype) -> nx.DiGraph:
    """A DiGraph with nodes ``c_{k-2}``, ``c_{k-1}``, ``0``.., ``c_{k}`` and op names on edges."""
    g = nx.DiGraph()
    g.add_node(node_label(0), kind="input")
    g.add_node(node_label(1), kind="input")
    for j, edges in enumerate(cell.nodes):
        target = node_label(j + 2)
        g.add_node(target, kind="intermediate")
        for e in edges:
            g.add_edge(node_label(e.source), target, op=e.op)
    g.add_node("c_{k}", kind="output")
    for i in cell.concat:
        g.add_edge(node_label(i), "c_{k}", op="concat")
    return g
