"""NEAT's gene attributes: new values and their mutation (neat-python's ``attributes.py``).

Float attributes (bias, response, weight), as neat-python's ``FloatAttribute``: a new value
is ``N(mean, stdev)`` (``init_type = "gaussian"``) or uniform on ``mean -/+ 2 stdev``
(``"uniform"``), clamped to ``[min, max]``; a mutation perturbs a value by
``N(0, mutate_power)`` with probability ``mutate_rate`` and replaces it by a new value with
probability ``replace_rate`` (keys ``{name}_init_mean``, ... in ``NEATParams``).
``enabled`` is redrawn 50/50 with probability ``enabled_mutate_rate`` (plus
``enabled_rate_to_true_add`` / ``_to_false_add``); activation and aggregation become a
random option with their ``mutate_rate``. ``mutate_attributes`` does all of it for every
gene of a population at once.
"""

from __future__ import annotations

import numpy as np
import torch

from neuroevo.nn.neat.genes import PAD
from neuroevo.nn.neat.population import NEATPopulation
from neuroevo.strategies.neat.params import GenomeConfig, NEATParams


def float_init(p: NEATParams, name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """New values of attribute ``name`` (``bias``, ``response`` or ``weight``), float32 on
    the CPU (the float32 steps in NumPy: the same values for a fraction of the per-call cost)."""
    mean, stdev = getattr(p, f"{name}_init_mean"), getattr(p, f"{name}_init_stdev")
    lo, hi = getattr(p, f"{name}_min_value"), getattr(p, f"{name}_max_value")
    # Python floats meet float32 arrays as float32 (NumPy 2's rule, and torch's)
    if getattr(p, f"{name}_init_type") == "uniform":
        a, b = max(lo, mean - 2 * stdev), min(hi, mean + 2 * stdev)
        return torch.from_numpy(torch.rand(shape, generator=gen).numpy() * (b - a) + a)
    return torch.from_numpy(np.clip(torch.randn(shape, generator=gen).numpy() * stdev + mean, lo, hi))


def float_mutate(p: NEATParams, name: str, values: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``values`` of attribute ``name`` perturbed or replaced, each with its configured rate."""
    rate, replace = getattr(p, f"{name}_mutate_rate"), getattr(p, f"{name}_replace_rate")
    power = getattr(p, f"{name}_mutate_power")
    lo, hi = getattr(p, f"{name}_min_value"), getattr(p, f"{name}_max_value")
    r = torch.rand(values.shape, generator=gen)
    noise = torch.randn(values.shape, generator=gen)
    perturbed = (values + noise * power).clamp(lo, hi)
    out = torch.where(r < rate, perturbed, values)
    if replace > 0:  # fresh values are drawn only for the genes that get one
        where = ((r >= rate) & (r < rate + replace)).nonzero(as_tuple=True)
        out[where] = float_init(p, name, (len(where[0]),), gen)
    return out


def _mutate_enabled(p: NEATParams, enabled: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``enabled`` flags with the redrawn ones redrawn 50/50 (in place)."""
    r = torch.rand(enabled.shape, generator=g)
    if p.enabled_rate_to_false_add == p.enabled_rate_to_true_add:
        rate: torch.Tensor | float = p.enabled_mutate_rate + p.enabled_rate_to_true_add
    else:
        rate = p.enabled_mutate_rate + torch.where(
            enabled,
            torch.full_like(r, p.enabled_rate_to_false_add),
            torch.full_like(r, p.enabled_rate_to_true_add),
        )
    where = (r < rate).nonzero().squeeze(1)
    enabled[where] = torch.rand(len(where), generator=g) < 0.5
    return enabled


def _float_mutate_numpy(p: NEATParams, name: str, values: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """``float_mutate`` of a float32 NumPy vector (the same draws and float32 steps)."""
    rate, replace = getattr(p, f"{name}_mutate_rate"), getattr(p, f"{name}_replace_rate")
    power = getattr(p, f"{name}_mutate_power")
    lo, hi = getattr(p, f"{name}_min_value"), getattr(p, f"{name}_max_value")
    r = torch.rand(values.shape, generator=gen).numpy()
    noise = torch.randn(values.shape, generator=gen).numpy()
    # Python floats meet float32 arrays as float32 (NumPy 2's rule, and torch's)
    out = np.where(r < rate, np.clip(values + noise * power, lo, hi), values)
    if replace > 0:
        where = np.flatnonzero((r >= rate) & (r < rate + replace))
        out[where] = float_init(p, name, (len(where),), gen).numpy()
    return out


def _mutate_enabled_numpy(p: NEATParams, enabled: np.ndarray, g: torch.Generator) -> np.ndarray:
    """``_mutate_enabled`` of a NumPy vector."""
    r = torch.rand(enabled.shape, generator=g).numpy()
    if p.enabled_rate_to_false_add == p.enabled_rate_to_true_add:
        rate: np.ndarray | float = p.enabled_mutate_rate + p.enabled_rate_to_true_add
    else:
        to_false, to_true = np.float32(p.enabled_rate_to_false_add), np.float32(p.enabled_rate_to_true_add)
        rate = p.enabled_mutate_rate + np.where(enabled, to_false, to_true)
    where = np.flatnonzero(r < rate)
    enabled[where] = torch.rand(len(where), generator=g).numpy() < 0.5
    return enabled


def mutate_attributes(
    p: NEATParams, cfg: GenomeConfig, pop: NEATPopulation, g: torch.Generator
) -> NEATPopulation:
    """Attribute mutations of the genes present (empty slots draw nothing), in place (CPU
    populations through NumPy views: the same draws and values)."""
    if pop.numpy_any_size:
        conn_np = np.flatnonzero(pop.conn_innovation.view(-1).numpy() != PAD)
        weight_np = pop.conn_weight.view(-1).numpy()
        weight_np[conn_np] = _float_mutate_numpy(p, "weight", weight_np[conn_np], g)
        flags_np = pop.conn_enabled.view(-1).numpy()
        flags_np[conn_np] = _mutate_enabled_numpy(p, flags_np[conn_np], g)
        node_np = np.flatnonzero(pop.node_key.view(-1).numpy() != PAD)
        for name in ("bias", "response"):
            if name == "bias" or p.response_mutate_rate > 0 or p.response_replace_rate > 0:
                values_np = getattr(pop, f"node_{name}").view(-1).numpy()
                values_np[node_np] = _float_mutate_numpy(p, name, values_np[node_np], g)
        node_key = pop.node_key.view(-1)
        node_at = torch.from_numpy(node_np)
    else:
        conn_at = (pop.conn_innovation != PAD).view(-1).nonzero().squeeze(1)
        weight = pop.conn_weight.view(-1)
        weight.index_copy_(0, conn_at, float_mutate(p, "weight", weight.index_select(0, conn_at), g))
        flags = pop.conn_enabled.view(-1)
        flags.index_copy_(0, conn_at, _mutate_enabled(p, flags.index_select(0, conn_at), g))
        node_key = pop.node_key.view(-1)
        node_at = (node_key != PAD).nonzero().squeeze(1)
        for name in ("bias", "response"):
            if name == "bias" or p.response_mutate_rate > 0 or p.response_replace_rate > 0:
                values = getattr(pop, f"node_{name}").view(-1)
                values.index_copy_(0, node_at, float_mutate(p, name, values.index_select(0, node_at), g))
    for name, rate, options in (
        ("activation", p.activation_mutate_rate, cfg.act_options),
        ("aggregation", p.aggregation_mutate_rate, cfg.agg_options),
    ):
        if rate <= 0:
            continue
        r = torch.rand(node_at.shape, generator=g)
        pick = options[torch.randint(len(options), node_at.shape, generator=g)]
        change = r < rate
        if name == "activation" and cfg.output_activation is not None:  # fixed outputs stay
            change &= node_key.index_select(0, node_at) >= cfg.first_hidden
        at = node_at[change]
        table = getattr(pop, f"node_{name}").view(-1)
        table.index_copy_(0, at, pick[change].to(table.dtype))
    return pop


__all__ = ["float_init", "float_mutate", "mutate_attributes"]
