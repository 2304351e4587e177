"""Population Based Training (Jaderberg et al. 2017) and PB2 (Parker-Holder et al. 2020).

- ``space``: the search space (continuous with bounds and optional log scale, integer,
  categorical) and its bounded sample/perturb operations;
- ``exploit``: truncation and binary tournament;
- ``pb2``: the GP-bandit explore rule;
- ``population``: what ``ask()`` hands out (per-member hyperparameters + who copies whom);
- ``strategy``: the ``PBT`` strategy that ties them together.
"""

from neuroevo.strategies.pbt.population import HyperparamPopulation
from neuroevo.strategies.pbt.space import Hyperparam, HyperparamSpec, SearchSpace
from neuroevo.strategies.pbt.strategy import PBT, PBTParams

__all__ = ["PBT", "HyperparamPopulation", "Hyperparam", "HyperparamSpec", "PBTParams", "SearchSpace"]
