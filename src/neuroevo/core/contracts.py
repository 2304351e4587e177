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

from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


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


CAPABILITY_WORDS: dict[Capability, str] = {
    Capability.DESCRIPTORS: "behaviour descriptors",
    Capability.EPISODES: "episodes",
    Capability.VALIDATION: "a validation split",
    Capability.INPUTS: "network inputs",
    Capability.PARAMETERS: "a score of the parameter vector itself",
    Capability.TRAINING: "training of the members (their weights, optimiser state)",
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
    """A task that keeps per-generation records (the maze's final positions) out of its state.

    At every checkpoint the runtime calls ``write_records(report_folder)``, which appends what
    was recorded since the last call to files there, so checkpoints stay bounded.
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


__all__ = [
    "ExportsIO",
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
