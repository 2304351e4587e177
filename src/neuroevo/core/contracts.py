"""The declared contracts between strategies, networks, tasks and the runtime.

Two things live here, and nowhere else:

- **Capabilities.** Each strategy declares the kind of population it hands out
  (``Strategy.population_kind``) and what it needs from a task (``Strategy.needs``); each
  network type declares the kinds it runs (``NetworkEntry.runs``); each task declares
  what it provides (``Task.provides``). ``neuroevo.config.validate_config`` checks every
  pairing before anything is written.
- **Optional hooks** as typed protocols. The runtime asks ``isinstance(obj, Protocol)``
  ("does it implement X?") instead of looking for an attribute by name.

``docs/design.md`` lists both, with the capability table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from neuroevo.core.types import Fitness


class PopulationKind(StrEnum):
    """What ``Strategy.ask()`` hands out, and so which phenotypes can run it."""

    FLAT = "flat"  # a Tensor[P, D]: one flat parameter vector per member
    LOWRANK = "lowrank"  # EGGROLL: a centre plus per-member low-rank factors (never P x m x n)
    NEAT = "neat"  # a NEATPopulation: genomes compiled to padded tensors
    HYPERPARAMS = "hyperparams"  # PBT: per-member hyperparameters (+ who copies whom); the task trains


POPULATION_KIND_WORDS: dict[PopulationKind, str] = {
    PopulationKind.FLAT: "a flat-vector network",
    PopulationKind.LOWRANK: "a low-rank (EGGROLL) network",
    PopulationKind.NEAT: "a NEAT network",
    PopulationKind.HYPERPARAMS: "a trainable network (PBT)",
}


class Capability(StrEnum):
    """What a task provides to a strategy or to the runtime."""

    DESCRIPTORS = "descriptors"  # Fitness.descriptors[P, K]: behaviour descriptors (novelty search)
    EPISODES = "episodes"  # rollouts in an environment (recurrent state, steps, observation statistics)
    VALIDATION = "validation"  # held-out data: Task.validate scores the best member on it
    INPUTS = "inputs"  # the task feeds the network inputs (in_features > 0), so a network can be sized
    PARAMETERS = "parameters"  # the task scores each member's parameter vector itself (no network)
    TRAINING = (
        "training"  # the task trains every member and holds its weights (PBT); trainable networks need it
    )
    READY_POINTS = "ready_points"  # saves each member's state at its own ready points (asynchronous PBT)


CAPABILITY_WORDS: dict[Capability, str] = {
    Capability.DESCRIPTORS: "behaviour descriptors",
    Capability.EPISODES: "episodes",
    Capability.VALIDATION: "a validation split",
    Capability.INPUTS: "network inputs",
    Capability.PARAMETERS: "a score of the parameter vector itself",
    Capability.TRAINING: "training of the members (their weights, optimiser state)",
    Capability.READY_POINTS: "a saved state per member at its own ready points (asynchronous PBT)",
}


# -- optional hooks ---------------------------------------------------------------------------
@runtime_checkable
class Reevaluating(Protocol):
    """A strategy that asks for extra evaluations of some members after ``tell`` (Deep GA elites).

    ``reevaluation_request() -> (candidates, n) | None``; the runtime evaluates the
    candidates on streams 1..n of the same generation and passes the mean to
    ``tell_reevaluation(values) -> stats``.
    """

    def reevaluation_request(self) -> tuple[Any, int] | None: ...

    def tell_reevaluation(self, values: torch.Tensor) -> dict[str, float] | None: ...


@runtime_checkable
class HasGenome(Protocol):
    """A strategy whose best member has a compact JSON genome (``seed_ga``'s seed chain).

    The runtime writes it to ``best/genome.json``; ``neuroevo best --export`` rebuilds the
    weights from it alone.
    """

    @property
    def best_genome(self) -> dict[str, Any] | None: ...


@runtime_checkable
class WritesReport(Protocol):
    """A strategy or task that adds files to ``report/`` at the end of a run."""

    def write_report(self, folder: Path) -> None: ...


@runtime_checkable
class WritesRecords(Protocol):
    """A task or strategy that keeps per-generation records out of its state (the maze's final
    positions, PBT's ready events).

    At every checkpoint, just before it, the runtime calls ``write_records(folder)`` (a task:
    ``report/``; a strategy: the run folder), which appends what was recorded since the last
    call to one JSONL file there and returns it (None: nothing new), so checkpoints stay
    bounded. The runtime stores the file's size in the checkpoint, and a resume cuts the file
    back to it, so a resumed run rewrites the same bytes.
    """

    def write_records(self, folder: Path) -> Path | None: ...


@runtime_checkable
class Recurrent(Protocol):
    """A phenotype with state across the steps of a rollout (stateful NEAT).

    ``reset_state(population)`` starts every rollout from a fresh state; the rollout owns it.
    """

    def reset_state(self, population: Any) -> None: ...


@runtime_checkable
class MemberSpecs(Protocol):
    """A phenotype whose members are not flat vectors (NEAT genomes): stored as JSON in ``best/``."""

    def member_spec(self, member: Any) -> dict[str, Any]: ...

    def member_from_spec(self, spec: dict[str, Any]) -> Any: ...


@runtime_checkable
class NamedTensors(Protocol):
    """A phenotype that names one member's tensors, for ``best/network.safetensors``."""

    def named_tensors(self, params: Any) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class ExportsIO(Protocol):
    """A task whose networks see preprocessed inputs or whose outputs are mapped (observation
    normalisation, standardised features, actions).

    ``export_io()`` describes those steps as JSON (``neuroevo.nn.io``); ``best/`` stores it,
    so an exported network takes what the env or data set gives and returns what it expects.
    """

    def export_io(self) -> dict[str, Any]: ...


@dataclass
class MemberResults:
    """What ``ShardedEvaluation.evaluate_members`` returns for the members of one shard.

    ``values[P]`` and ``descriptors[P, K]`` as in ``Fitness``; ``steps`` summed over shards;
    ``rows``: per-member partial statistics (first dimension P: observation sums, episode
    lengths), which ``merge_members`` reduces over the whole population in member order.
    """

    values: torch.Tensor
    descriptors: torch.Tensor | None = None
    steps: int = 0
    rows: dict[str, torch.Tensor] = field(default_factory=dict)

    @staticmethod
    def concat(parts: Sequence[MemberResults]) -> MemberResults:
        """The shards' results joined in shard order: the population's results, exactly."""
        if len(parts) == 1:
            return parts[0]
        descriptors = None
        if parts[0].descriptors is not None:
            descriptors = torch.cat([p.descriptors for p in parts])  # type: ignore[misc]
        return MemberResults(
            values=torch.cat([p.values for p in parts]),
            descriptors=descriptors,
            steps=sum(int(p.steps) for p in parts),
            rows={k: torch.cat([p.rows[k] for p in parts]) for k in parts[0].rows},
        )


@dataclass
class GaussianMembers:
    """Members ``center + sigma * eps_j`` (antithetic: ``center - sigma * eps_j`` after the first
    half), ``eps_j`` keyed by ``(seed, generation, j, purpose)``: an OpenES population as its
    shared state plus member keys (Salimans et al. 2017), so a worker rebuilds its own rows
    and only the centre crosses the wire. ``rows(a, b)`` equals ``population[a:b]`` bit for bit.
    """

    center: torch.Tensor
    sigma: float
    seed: int
    generation: int
    size: int
    antithetic: bool
    purpose: str = "noise"
    generator: str = "mt19937"  # the strategy's noise generator (``population_normal``)

    def __len__(self) -> int:
        return self.size

    def rows(self, start: int, stop: int) -> torch.Tensor:
        from neuroevo.core.random import population_normal

        half = self.size // 2 if self.antithetic else self.size
        index = torch.arange(start, stop)
        keys = (index % half if self.antithetic else index).tolist()
        dim, dtype = self.center.numel(), self.center.dtype
        eps = population_normal(
            keys,
            dim,
            self.seed,
            self.generation,
            self.purpose,
            dtype=dtype,
            device=self.center.device,
            generator=self.generator,
        )
        scaled = self.sigma * eps
        if not self.antithetic:
            return self.center + scaled
        plus = (index < half).to(self.center.device).unsqueeze(1)
        return torch.where(plus, self.center + scaled, self.center - scaled)


@runtime_checkable
class RegeneratesMembers(Protocol):
    """A strategy whose last ``ask()`` is a function of shared state plus member keys.

    ``member_recipe()`` describes that population (``GaussianMembers`` for ES, the seed chains
    of seed-chain GA), or None; a distributed executor then sends the recipe and member ranges
    instead of the rows, and the workers regenerate the rows bit for bit.
    """

    def member_recipe(self) -> Any: ...


@runtime_checkable
class ShardedEvaluation(Protocol):
    """A task whose evaluation has a per-member part and a whole-population part.

    Observation statistics and batch metrics are reductions over the whole population; an
    executor that splits the population into shards must reduce them in the same order to get
    the same bits. ``evaluate_members`` runs some members and leaves the task unchanged;
    ``merge_members`` takes the results of all members (``MemberResults.concat`` of the
    shards, in member order), updates the task's state and returns the population's
    ``Fitness``. ``evaluate`` is the two in a row, so every executor merges alike.
    """

    def evaluate_members(
        self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0
    ) -> MemberResults: ...

    def merge_members(self, results: MemberResults, generation: int = 0, *, stream: int = 0) -> Fitness: ...


@runtime_checkable
class EstimatesMemory(Protocol):
    """A task that can say about how many bytes one member's evaluation holds at its peak.

    The local executor evaluates a population in chunks of members that fit its memory
    budget (``run.max_memory_gb``), merged exactly as one batched call (``ShardedEvaluation``
    or shard order), so the result is bit-identical.
    """

    def bytes_per_member(self, phenotype: Any) -> int: ...


@runtime_checkable
class Layered(Protocol):
    """A phenotype of fully connected layers (``PopulationMLP``): ``[in, hidden..., out]``."""

    layer_sizes: list[int]


def activations_per_sample(phenotype: Any) -> int:
    """Floats one sample creates in one member's forward pass (the widths of its layers)."""
    if isinstance(phenotype, Layered):
        return int(sum(phenotype.layer_sizes[1:]))
    return max(1, int(phenotype.in_features) + int(phenotype.out_features))


__all__ = [
    "EstimatesMemory",
    "Layered",
    "activations_per_sample",
    "ExportsIO",
    "GaussianMembers",
    "RegeneratesMembers",
    "MemberResults",
    "ShardedEvaluation",
    "CAPABILITY_WORDS",
    "POPULATION_KIND_WORDS",
    "Capability",
    "HasGenome",
    "MemberSpecs",
    "NamedTensors",
    "PopulationKind",
    "Recurrent",
    "Reevaluating",
    "WritesRecords",
    "WritesReport",
]
