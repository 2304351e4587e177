"""Executors: where a population is evaluated. The local executor runs in this process.

An executor takes the whole population and returns its Fitness; a distributed executor
(Ray, a later issue) shards the population and gathers the fitness scalars, with
strategies and tasks unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol

from neuroevo.core.types import Fitness


class Executor(Protocol):
    def evaluate(
        self, task: Any, phenotype: Any, population: Any, generation: int, *, stream: int = 0
    ) -> Fitness: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Evaluates the whole population in this process as one batched call."""

    def evaluate(
        self, task: Any, phenotype: Any, population: Any, generation: int, *, stream: int = 0
    ) -> Fitness:
        return task.evaluate(phenotype, population, generation, stream=stream)

    def close(self) -> None:
        return None
