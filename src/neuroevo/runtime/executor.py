"""Executors: where a population is evaluated. The local executor runs in this process.

An executor takes the whole population and returns its Fitness. A distributed executor
(``neuroevo.runtime.ray_executor``) splits the population into contiguous shards, has each
evaluated elsewhere and joins the results here, with strategies and tasks unchanged.

The pieces both use live here, so both give the same bits:

- ``shard_bounds`` / ``take``: contiguous member ranges and the sub-population of one range,
  for each population kind (a flat ``Tensor[P, D]`` slices, a ``NEATPopulation`` slices,
  a ``LowRankPopulation`` is re-indexed without expanding any member).
- ``evaluate_shard`` / ``merge_shards``: a task with the ``ShardedEvaluation`` hook returns
  per-member results and the merge reduces them over the population in member order, as
  its own ``evaluate`` does; any other task's shard fitnesses are joined in shard order
  (values, descriptors, steps exactly; its metrics as member-weighted means).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from neuroevo.core.contracts import EstimatesMemory, MemberResults, ShardedEvaluation
from neuroevo.core.types import Fitness


class Executor(Protocol):
    def evaluate(
        self, task: Any, phenotype: Any, population: Any, generation: int, *, stream: int = 0
    ) -> Fitness: ...

    def close(self) -> None: ...


@runtime_checkable
class ReportsStats(Protocol):
    """An executor with counters of its own for each metrics line (Ray: worker_failures, bytes)."""

    def generation_stats(self) -> dict[str, float]: ...


@runtime_checkable
class TakesMemberRecipes(Protocol):
    """An executor that can send a ``RegeneratesMembers`` strategy's recipe instead of the rows.

    The runtime calls ``note_recipe(population, recipe)`` after each ``ask()``; the recipe is
    valid for that population object only.
    """

    def note_recipe(self, population: Any, recipe: Any) -> None: ...


#: the local executor's default memory budget for one evaluation (``run.max_memory_gb``)
DEFAULT_MAX_MEMORY_GB = 2.0


class LocalExecutor:
    """Evaluates the population in this process: one batched call, or chunks that fit a memory budget.

    A task that can estimate its per-member memory (``EstimatesMemory``) is evaluated in
    contiguous chunks of at most ``max_memory_gb`` each (``None``: never chunk), merged as
    one call is (``merge_shards``), so the fitness is bit-identical to the unchunked pass
    while the peak memory is bounded (100,000 MLPs on digits need no large machine).
    """

    def __init__(self, max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB):
        self.max_memory_gb = max_memory_gb

    def chunks(self, task: Any, phenotype: Any, size: int) -> list[tuple[int, int]]:
        """The member ranges one evaluation of ``size`` members runs in."""
        if not self.max_memory_gb or not isinstance(task, EstimatesMemory):
            return [(0, size)]
        needed = task.bytes_per_member(phenotype) * size
        pieces = -(-needed // int(self.max_memory_gb * 2**30))
        return shard_bounds(size, max(1, pieces))

    def evaluate(
        self, task: Any, phenotype: Any, population: Any, generation: int, *, stream: int = 0
    ) -> Fitness:
        bounds = self.chunks(task, phenotype, population_size(population))
        parts = [
            evaluate_shard(task, phenotype, take(population, a, b), generation, stream) for a, b in bounds
        ]
        return merge_shards(task, parts, generation, stream)

    def close(self) -> None:
        return None


# -- sharding -----------------------------------------------------------------------------------
def population_size(population: Any) -> int:
    """Members in a population: rows of a ``[P, D]`` tensor, or ``len()``."""
    if isinstance(population, torch.Tensor):
        return int(population.shape[0]) if population.dim() > 1 else 1
    return len(population)


#: members per shard are a multiple of this (all shards but the last): torch's CPU kernels run
#: element-wise ops in SIMD blocks of up to 32 elements and the leftover tail in scalar code,
#: whose transcendental functions (exp, sigmoid) can differ in the last bit; with whole blocks
#: per shard every member meets the same code as in one batched call.
SHARD_MULTIPLE = 64


def shard_bounds(size: int, shards: int, multiple: int = SHARD_MULTIPLE) -> list[tuple[int, int]]:
    """At most ``shards`` contiguous ``(start, stop)`` ranges covering ``0..size``, each but the
    last a multiple of ``multiple`` members, as even as that allows (no empty range)."""
    blocks = -(-size // multiple)
    shards = max(1, min(int(shards), blocks))
    base, extra = divmod(blocks, shards)
    bounds, start = [], 0
    for i in range(shards):
        stop = min(size, start + (base + (1 if i < extra else 0)) * multiple)
        bounds.append((start, stop))
        start = stop
    return bounds


def take(population: Any, start: int, stop: int) -> Any:
    """Members ``start..stop`` of ``population`` as a population of the same kind."""
    from neuroevo.nn.lowrank import LowRankPopulation

    if isinstance(population, LowRankPopulation):
        return _take_lowrank(population, start, stop)
    if start == 0 and stop == population_size(population):
        return population
    return population[start:stop]


def _take_lowrank(pop: Any, start: int, stop: int) -> Any:
    """Members ``start..stop`` of an EGGROLL population: their factors, sign folded into ``a``
    (exact: a sign flip), as a population without antithetic pairs."""
    from neuroevo.nn.lowrank import LowRankPopulation

    index = pop.pair_index()[start:stop]
    sign = pop.signs()[start:stop]
    return LowRankPopulation(
        pop.center,
        pop.sigma,
        pop.slots,
        pop.ranks,
        [a[index] * sign.view(-1, 1, 1) for a in pop.a],
        [b[index] for b in pop.b],
        pop.vector_index,
        pop.vector_noise[index] * sign.unsqueeze(1),
        stop - start,
        False,
        pop.seed,
        pop.generation,
    )


# -- evaluation and merge -------------------------------------------------------------------------
@dataclass
class ShardResult:
    """One shard's evaluation: per-member results, and (a task without the hook) its metrics."""

    results: MemberResults
    metrics: dict[str, float] = field(default_factory=dict)
    members: int = 0


def evaluate_shard(task: Any, phenotype: Any, shard: Any, generation: int, stream: int = 0) -> ShardResult:
    """Evaluate one shard, leaving a ``ShardedEvaluation`` task unchanged (the merge updates it)."""
    if isinstance(task, ShardedEvaluation):
        results = task.evaluate_members(phenotype, shard, generation, stream=stream)
        return ShardResult(results, members=int(results.values.numel()))
    fitness = task.evaluate(phenotype, shard, generation, stream=stream)
    if not isinstance(fitness, Fitness):
        fitness = Fitness(values=torch.as_tensor(fitness))
    results = MemberResults(fitness.values, fitness.descriptors, int(fitness.steps))
    metrics = {k: float(v) for k, v in fitness.metrics.items()}
    return ShardResult(results, metrics, int(fitness.values.numel()))


def merge_shards(task: Any, parts: Sequence[ShardResult], generation: int, stream: int = 0) -> Fitness:
    """The population's Fitness from its shards' results, in shard (= member) order."""
    results = MemberResults.concat([p.results for p in parts])
    if isinstance(task, ShardedEvaluation):
        return task.merge_members(results, generation, stream=stream)
    if len(parts) == 1:
        metrics = dict(parts[0].metrics)
    else:
        total = sum(p.members for p in parts) or 1
        metrics = {k: sum(p.metrics.get(k, 0.0) * p.members for p in parts) / total for k in parts[0].metrics}
    return Fitness(results.values, results.descriptors, results.steps, metrics)
