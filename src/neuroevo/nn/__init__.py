"""Phenotypes: activations, initialisers, the population MLP and the nn.Module adapter."""

from typing import Any

from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import (
    ACTIVATIONS,
    activation_names,
    get_activation,
    register_activation,
)
from neuroevo.nn.adapter import ModuleAdapter
from neuroevo.nn.base import Phenotype
from neuroevo.nn.init import INITIALIZERS, get_initializer, initializer_names, register_initializer
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.nn.neat_graph import NEATPhenotype, NEATPopulation
from neuroevo.nn.networks import NETWORKS, MLPParams, NetworkParams, VectorPhenotype, register_network

PHENOTYPE_LOADERS: dict[str, Any] = {
    "mlp": PopulationMLP.from_spec,
    "vector": VectorPhenotype.from_spec,
    "neat": NEATPhenotype.from_spec,
}


def phenotype_from_spec(spec: dict[str, Any]) -> Phenotype:
    """Rebuild a phenotype from ``phenotype.spec()`` (as stored in ``best/network.json``)."""
    kind = spec.get("type")
    if kind not in PHENOTYPE_LOADERS:
        raise ConfigError(
            f"network type {kind!r} cannot be rebuilt from its spec; allowed: {', '.join(PHENOTYPE_LOADERS)}"
        )
    return PHENOTYPE_LOADERS[kind](spec)


__all__ = [
    "NEATPhenotype",
    "NEATPopulation",
    "ACTIVATIONS",
    "MLPParams",
    "NETWORKS",
    "NetworkParams",
    "VectorPhenotype",
    "register_network",
    "INITIALIZERS",
    "ModuleAdapter",
    "PHENOTYPE_LOADERS",
    "Phenotype",
    "PopulationMLP",
    "activation_names",
    "get_activation",
    "get_initializer",
    "initializer_names",
    "phenotype_from_spec",
    "register_activation",
    "register_initializer",
]
