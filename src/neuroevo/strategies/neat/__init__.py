"""NEAT, the strategy side: how a population of genomes evolves (Stanley & Miikkulainen 2002).

- ``params``: ``NEATParams`` (the config keys) and ``GenomeConfig`` (one run's genome layout);
- ``innovation``: historical markings, ``InnovationTracker``;
- ``distance``: the compatibility distance of whole populations;
- ``crossover``, ``mutation``, ``attributes``: variation (structural and attribute mutations);
- ``initial``: the minimal initial genomes;
- ``species``: speciation and stagnation (``SpeciesSet``);
- ``reproduction``: explicit fitness sharing (offspring counts) and parent selection;
- ``strategy``: the ask/tell class ``NEAT``.

Genomes, their compiled phenotype and drawings are ``neuroevo.nn.neat``.
"""

from neuroevo.strategies.neat.distance import DistanceCache, compatibility_distance
from neuroevo.strategies.neat.innovation import InnovationTracker
from neuroevo.strategies.neat.params import GenomeConfig, NEATParams
from neuroevo.strategies.neat.species import SpeciesSet
from neuroevo.strategies.neat.strategy import NEAT

__all__ = [
    "NEAT",
    "DistanceCache",
    "GenomeConfig",
    "InnovationTracker",
    "NEATParams",
    "SpeciesSet",
    "compatibility_distance",
]
