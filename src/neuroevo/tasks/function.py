"""FunctionTask: a user's Python function as fitness, with the direction stated explicitly."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field

from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness
from neuroevo.tasks.base import Task, TaskParams


class FunctionParams(TaskParams):
    function: str = Field(..., description="import path 'package.module:function'")
    maximize: bool = Field(..., description="true if larger values are better; required, never guessed")
    per_member: bool = Field(False, description="call the function once per member instead of on [P, D]")
    dimension: int = Field(
        0, ge=0, description="search dimension when there is no network (network.type = 'vector')"
    )


class FunctionTask(Task):
    """Fitness from ``fn(population[P, D]) -> values[P]`` (or ``fn(row[D]) -> float`` with ``per_member``).

    ``maximize`` must be given: with ``maximize=False`` the values are negated so that the
    strategies, which all maximise, minimise the user's objective. Reported fitness is in
    the maximised direction.
    """

    provides = frozenset({Capability.PARAMETERS})

    name = "function"
    Params = FunctionParams

    def __init__(
        self,
        fn: Callable[[Any], Any] | str,
        *,
        maximize: bool,
        per_member: bool = False,
        dimension: int = 0,
        seed: int = 0,
        device="cpu",
    ):
        if not isinstance(maximize, bool):
            raise ConfigError(f"maximize = {maximize!r}; allowed: true or false (required)")
        self.fn = load_callable(fn) if isinstance(fn, str) else fn
        self.maximize, self.per_member = maximize, per_member
        self.in_features = self.out_features = 0
        self.dimension = dimension

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        if self.per_member:
            values = torch.tensor([float(self.fn(row)) for row in population], dtype=torch.float64)
        else:
            values = torch.as_tensor(self.fn(population)).reshape(-1)
        if not self.maximize:
            values = -values
        return Fitness(values=values, steps=int(values.numel()))


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``'package.module:attribute'``; a one-line ConfigError when it cannot."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"task.function = {path!r}; allowed: an import path like 'mypkg.fitness:score'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"task.function = {path!r}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"task.function = {path!r}: {module_name} has no callable {attr!r}")
    return fn
