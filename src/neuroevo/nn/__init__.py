"""Phenotypes: activations, initialisers, the population MLP, EGGROLL, NEAT and the nn.Module adapter.

Importing this package registers every built-in network type (``mlp``, ``vector``,
``eggroll_mlp``, ``neat``), each from its own module.
"""

from neuroevo.nn.activations import (
    ACTIVATIONS,
    activation_names,
    get_activation,
    register_activation,
)
from neuroevo.nn.adapter import ModuleAdapter
from neuroevo.nn.base import Phenotype
from neuroevo.nn.init import INITIALIZERS, get_initializer, initializer_names, register_initializer
from neuroevo.nn.lowrank import EggrollMLP
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.nn.neat import NEATPhenotype, NEATPopulation
from neuroevo.nn.networks import (
    NETWORKS,
    MLPParams,
    NetworkEntry,
    NetworkParams,
    VectorPhenotype,
    phenotype_from_spec,
    register_network,
)

__all__ = [
    "EggrollMLP",
    "NEATPhenotype",
    "NEATPopulation",
    "ACTIVATIONS",
    "MLPParams",
    "NETWORKS",
    "NetworkEntry",
    "NetworkParams",
    "VectorPhenotype",
    "register_network",
    "INITIALIZERS",
    "ModuleAdapter",
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
