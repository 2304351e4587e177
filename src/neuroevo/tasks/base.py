"""The Task contract: ``evaluate(phenotype, population, generation) -> Fitness``.

Tasks do not know strategies. ``generation`` lets a task draw per-generation randomness
(minibatches, episode seeds) from the counter-based key, so a resumed run sees the same
data; it defaults to 0 for one-off calls. ``stream`` selects an independent set of
episodes/minibatches for the same generation (stream 0 is the normal evaluation; Deep GA
re-evaluates elite candidates on streams 1, 2, ...); deterministic tasks ignore it.
``validate(phenotype, params)`` scores one
member (the best) on held-out data. ``state_dict``/``load_state_dict`` carry any state a
task accumulates (observation statistics) into checkpoints; it must stay bounded over a long
run (per-generation records go to report files instead, see ``MazeTask.write_records``).

Hyperparameters: a task's ``Params`` model is the only place its keys, defaults, bounds and
descriptions are written. Constructors take those keys as keywords (or the model itself) and
validate them once with ``params_from``; ``seed`` and ``device`` come from ``[run]``.

``provides`` declares what a task offers (``neuroevo.core.contracts.Capability``): network
inputs, episodes, a held-out validation split, behaviour descriptors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness


class TaskParams(BaseModel):
    """Config keys of a task; each task extends this."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Task(ABC):
    """Base class. ``in_features``/``out_features`` size the network built for this task (0 = none)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[TaskParams]] = TaskParams
    #: what this task offers strategies and the runtime (descriptors, episodes, validation, inputs)
    provides: ClassVar[frozenset[Capability]] = frozenset()
    in_features: int = 0
    out_features: int = 0
    default_output_activation: str = "identity"

    @classmethod
    def params_from(cls, params: BaseModel | None = None, **keys: Any) -> Any:
        """``params`` (a ``cls.Params``) or ``keys`` validated by ``cls.Params``; one-line ConfigError."""
        if params is not None:
            if keys:
                raise TypeError(f"{cls.__name__}: pass a {cls.Params.__name__} or keywords, not both")
            keys = params.model_dump()
        try:
            return cls.Params.model_validate(keys)
        except ValidationError as exc:
            raise ConfigError(params_error(exc, cls.Params)) from None

    @abstractmethod
    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        """Fitness of every member (higher is better)."""

    def validate(self, phenotype: Any, params: Any) -> dict[str, float]:
        """Held-out metrics of one member; empty when the task has no held-out data."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def params_error(exc: ValidationError, model: type[BaseModel], section: str = "task") -> str:
    """One line for the first error of ``exc``: ``task.<key> = <value>: <what is allowed>``."""
    err = exc.errors()[0]
    key = ".".join([section, *(str(p) for p in err["loc"])])
    if err["type"] == "extra_forbidden":
        return f"{key} = {err['input']!r}: unknown key; allowed keys: {', '.join(model.model_fields)}"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key} = {err['input']!r}: {err['msg'].removeprefix('Value error, ')}"
