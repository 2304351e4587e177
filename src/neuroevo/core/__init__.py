"""Lowest layer: counter-based randomness, fitness shaping, errors and small shared types.

Names are imported on first use, so ``neuroevo.core.errors`` (which the CLI needs for
``--help``) does not import torch.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "ConfigError": "errors",
    "FitnessEvaluationError": "errors",
    "NeuroevoError": "errors",
    "derive_key": "random",
    "member_generator": "random",
    "population_normal": "random",
    "Registry": "registry",
    "centered_rank": "shaping",
    "shape_fitness": "shaping",
    "z_score": "shaping",
    "Best": "types",
    "Fitness": "types",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'neuroevo.core' has no attribute {name!r}")
    return getattr(import_module(f"neuroevo.core.{_WHERE[name]}"), name)
