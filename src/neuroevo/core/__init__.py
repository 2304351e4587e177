"""Lowest layer: counter-based randomness, fitness shaping, errors and small shared types."""

from neuroevo.core.errors import ConfigError, FitnessEvaluationError, NeuroevoError
from neuroevo.core.random import derive_key, member_generator, population_normal
from neuroevo.core.registry import Registry
from neuroevo.core.shaping import centered_rank, shape_fitness, z_score
from neuroevo.core.types import Best, Fitness

__all__ = [
    "Best",
    "ConfigError",
    "Fitness",
    "FitnessEvaluationError",
    "NeuroevoError",
    "Registry",
    "centered_rank",
    "derive_key",
    "member_generator",
    "population_normal",
    "shape_fitness",
    "z_score",
]
