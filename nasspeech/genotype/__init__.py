"""Genotypes: discrete architectures, their JSON form, parsing from alphas, graphs and plots."""

from nasspeech.genotype.cell import CellGenotype, ComponentGenotype, Edge, node_name
from nasspeech.genotype.model import SCHEMA_VERSION, Genotype, GenotypeError, GenotypeWarning
from nasspeech.genotype.parse import parse_cell

__all__ = ["SCHEMA_VERSION", "CellGenotype", "ComponentGenotype", "Edge", "Genotype",
           "GenotypeError", "GenotypeWarning", "node_name", "parse_cell"]
