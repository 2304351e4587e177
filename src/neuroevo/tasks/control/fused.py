"""Fused rollouts: a block of K steps of (observe, normalise, MLP forward, action map, env step).

The plain rollout (``ControlTask.rollout`` with any phenotype) runs some 60 small eager kernels
per step and syncs with the host twice per step. For the common case, a ``PopulationMLP`` with
one activation per layer, deterministic actions and a ``[P, D]`` tensor population, the rollout
instead runs ``block``: ``BLOCK_STEPS`` steps written as one pure tensor function with no host
sync inside, so finished episodes are only checked (``active.any()``) once per block. Steps of
finished rows are masked, as in the plain path (stepping past the limit is harmless: every row
is truncated at ``max_steps``).

Two ways to run the block:

- eager: the same operations as the plain path (``baddbmm`` forward, the env's own dynamics),
  so the results are bit-identical to it; finished members are dropped at block boundaries
  (compaction), as in the plain path;
- compiled: ``torch.compile`` (inductor: one C++ loop nest per step on the CPU) of the block,
  through ``neuroevo.core.compile.maybe_compile`` (eager fallback with one warning line). The
  forward is written as broadcast multiply-and-sum so that inductor fuses it with the env step
  instead of calling an external matmul; results agree with eager to float rounding. The batch
  keeps its shape (no compaction: a new shape would compile again).

Compiling costs seconds (cold: ~10 s or more per shape, with inductor's import; inductor's
on-disk cache makes later processes pay less), so ``ControlParams.compile = "auto"`` compiles
only rollouts of at least ``COMPILE_MIN_ROWS`` env rows (``P x E``), where the per-step saving
pays for it within a few generations; ``true`` always compiles (long runs at small P x E),
``false`` never does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from neuroevo.core.compile import maybe_compile
from neuroevo.nn.activations import get_activation
from neuroevo.tasks.control.base import BatchedEnv

#: steps per fused block; ``active.any()`` (the only host sync) runs once per block
BLOCK_STEPS = 10
#: ``compile = "auto"`` compiles a rollout of at least this many env rows (P x E)
COMPILE_MIN_ROWS = 1024

Carry = tuple[torch.Tensor, ...]
_BLOCKS: dict[tuple, Callable[..., Carry]] = {}


def fusable(phenotype: Any, population: Any, *, deterministic: bool) -> bool:
    """Whether the fused path applies: a biased ``PopulationMLP`` with one activation per layer,
    a ``[P, D]`` tensor population and deterministic actions (sampled actions draw CPU noise per
    step from a generator, which the plain path does)."""
    from neuroevo.nn.mlp import PopulationMLP

    return (
        type(phenotype) is PopulationMLP
        and phenotype.bias
        and all(isinstance(a, str) for a in phenotype.activations)
        and isinstance(population, torch.Tensor)
        and population.dim() == 2
        and deterministic
    )


def make_block(
    env: BatchedEnv,
    activations: Sequence[str],
    *,
    normalize: bool,
    steps: int = BLOCK_STEPS,
    broadcast_matmul: bool = False,
) -> Callable[..., Carry]:
    """A pure function running ``steps`` masked steps of ``env``'s dynamics under an MLP policy.

    ``block(weights, mean, inv_std, low, high, state, elapsed, active, returns, lengths, count,
    obs_sum, obs_sumsq)`` returns the new ``(state, elapsed, active, returns, lengths, count,
    obs_sum, obs_sumsq)``. ``weights`` is ``(W_0, b_0, W_1, b_1, ...)`` with ``W_l[P, in, out]``
    and ``b_l[P, out]``; ``state[N, S]`` with ``N = P * E`` (row ``p * E + e``); ``returns[N]``
    float64, ``lengths[N]`` and ``elapsed[N]`` long, ``active[N]`` bool; the observation sums
    are per member, float64, and only accumulated when ``normalize``. ``mean``, ``inv_std``,
    ``low``, ``high`` are in the env dtype (``low``/``high`` unused for discrete actions).
    """
    acts = [get_activation(a) for a in activations]
    num_actions = env.num_actions
    max_steps = env.max_steps
    f64 = torch.float64

    def forward(weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer, act in enumerate(acts):
            w, b = weights[2 * layer], weights[2 * layer + 1]
            if broadcast_matmul:  # fusable with the elementwise work around it
                z = (h.unsqueeze(-1) * w.unsqueeze(1)).sum(-2) + b.unsqueeze(1)
            else:  # the plain path's operation: bit-identical to PopulationMLP.forward
                z = torch.baddbmm(b.unsqueeze(1), h, w)
            h = act(z)
        return h

    def block(
        weights: Sequence[torch.Tensor],
        mean: torch.Tensor,
        inv_std: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        state: torch.Tensor,
        elapsed: torch.Tensor,
        active: torch.Tensor,
        returns: torch.Tensor,
        lengths: torch.Tensor,
        count: torch.Tensor,
        obs_sum: torch.Tensor,
        obs_sumsq: torch.Tensor,
    ) -> Carry:
        members = weights[0].shape[0]
        rows = state.shape[0]
        episodes = rows // members
        for _ in range(steps):
            obs = env._observe(state)
            if normalize:  # per-member sums, in the plain path's order
                mask = active.unsqueeze(1).to(f64)
                obs64 = (obs.to(f64) * mask).view(members, episodes, -1)
                count = count + mask.view(members, episodes).sum(1)
                obs_sum = obs_sum + obs64.sum(1)
                obs_sumsq = obs_sumsq + (obs64 * obs64).sum(1)
                obs = (obs - mean) * inv_std
            out = forward(weights, obs.view(members, episodes, -1).to(weights[0].dtype))
            out = out.reshape(rows, -1)
            if num_actions > 0:
                actions = out[:, :num_actions].argmax(-1)
            else:
                lo, hi = low.to(out.dtype), high.to(out.dtype)  # as map_actions: in the network's dtype
                actions = (lo + (torch.tanh(out) + 1.0) * 0.5 * (hi - lo)).to(state.dtype)
            new_state, reward, terminated = env._dynamics(state, actions, elapsed, traced=True)
            state = torch.where(active.unsqueeze(1), new_state, state)
            returns = returns + (reward * active).to(f64)
            lengths = lengths + active.long()
            elapsed = torch.where(active, elapsed + 1, elapsed)
            ended = (terminated & active) | (elapsed >= max_steps)
            active = active & ~ended
        return state, elapsed, active, returns, lengths, count, obs_sum, obs_sumsq

    return block


def fused_block(
    env: BatchedEnv, activations: Sequence[str], *, normalize: bool, compiled: bool
) -> Callable[..., Carry]:
    """``make_block`` for this env and network, compiled through ``maybe_compile`` or eager.

    Built once per process for each (env class, step limit, dtype, device, activations,
    normalisation, compiled), so every task (and seed) with the same setting shares one compiled
    function and pays the compile once.
    """
    key = (type(env), env.max_steps, env.dtype, env.device, tuple(activations), normalize, compiled)
    if key not in _BLOCKS:
        block = make_block(env, activations, normalize=normalize, broadcast_matmul=compiled)
        if compiled:
            block = maybe_compile(
                block, name=f"{env.id} fused rollout", device=str(env.device), dynamic=False
            )
        _BLOCKS[key] = block
    return _BLOCKS[key]
