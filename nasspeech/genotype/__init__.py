"""Genotypes: discrete architectures, their JSON form, graphs and plots."""

from nasspeech.genotype.model import (
    SCHEMA_VERSION,
    CellGenotype,
    ComponentGenotype,
    Edge,
    Genotype,
    GenotypeError,
    GenotypeWarning,
    node_name,
)

__all__ = ["SCHEMA_VERSION", "CellGenotype", "ComponentGenotype", "Edge", "Genotype",
           "GenotypeError", "GenotypeWarning", "node_name"]
