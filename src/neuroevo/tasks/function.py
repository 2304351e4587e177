"""FunctionTask: a user's Python function as fitness, with the direction stated explicitly.

From a config::

    [task]
    name = "function"
    function = "examples/rosenbrock.py:rosenbrock"   # or an importable "package.module:attr"
    maximize = false                                 # required: nothing guesses the direction
    dimension = 10                                   # the vector length for network.type = "vector"

The function is called once per generation on the whole population, ``fn(x[P, D]) -> [P]``
(``per_member = true`` calls ``fn(row[D]) -> float`` once per member instead, a Python loop
for functions that cannot be batched). The task feeds no inputs to a network: it provides
``Capability.PARAMETERS`` (it scores the parameter vector itself), which is what
``network.type = "vector"`` needs (the member is the searched vector). From Python, a function
may also run the parameters through a network itself (``examples/custom_fitness.py``).
A path to a ``.py`` file is resolved against the current directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import Field

from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError, FitnessEvaluationError
from neuroevo.core.imports import load_object
from neuroevo.core.types import Fitness
from neuroevo.tasks.base import Task, TaskParams


class FunctionParams(TaskParams):
    function: str = Field(
        ..., description="'package.module:function' or 'path/to/file.py:function'; fn(x[P, D]) -> [P]"
    )
    maximize: bool = Field(..., description="true if larger values are better; required, never guessed")
    per_member: bool = Field(False, description="call the function once per member instead of on [P, D]")
    dimension: int = Field(
        0, ge=0, description="search dimension when there is no network (network.type = 'vector')"
    )


class FunctionTask(Task):
    """Fitness from ``fn(population[P, D]) -> values[P]`` (or ``fn(row[D]) -> float`` with ``per_member``).

    ``maximize`` must be given: with ``maximize=False`` the values are negated so that the
    strategies, which all maximise, minimise the user's objective. Reported fitness is in
    the maximised direction. ``FunctionTask(fn, maximize=True)`` takes the callable itself;
    a string is an import path (see the module doc).
    """

    name = "function"
    Params = FunctionParams
    #: no network inputs: the member's parameter vector itself is scored (network.type = "vector")
    provides: ClassVar[frozenset[Capability]] = frozenset({Capability.PARAMETERS})

    def __init__(
        self,
        function: Callable[[Any], Any] | str | None = None,
        *,
        params: FunctionParams | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        **keys: Any,
    ):
        if callable(function):
            # a Python callable: the key records where it came from
            keys["function"] = (
                f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', '?')}"
            )
        elif function is not None:
            keys["function"] = function
        self.params = p = self.params_from(params, **keys)
        self.fn = function if callable(function) else load_callable(p.function)
        self.maximize, self.per_member, self.dimension = p.maximize, p.per_member, p.dimension
        self.in_features = self.out_features = 0

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        size = len(population)
        if self.per_member:
            values = torch.tensor([float(self.fn(row)) for row in population], dtype=torch.float64)
        else:
            values = torch.as_tensor(self.fn(population))
        if values.shape != (size,):
            raise FitnessEvaluationError(
                f"generation {generation}: task.function = {self.params.function!r} returned shape "
                f"{list(values.shape)}; allowed: one value per member, [{size}]",
                generation,
            )
        if not self.maximize:
            values = -values
        return Fitness(values=values, steps=int(values.numel()))


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``'package.module:attribute'`` or ``'path/to/file.py:attribute'``; one-line ConfigError."""
    fn = load_object(path, "task.function")
    if not callable(fn):
        raise ConfigError(f"task.function = {path!r}: {type(fn).__name__} is not callable")
    return fn
