"""The Task contract: ``evaluate(phenotype, population, generation) -> Fitness``.

Tasks do not know strategies. ``generation`` lets a task draw per-generation randomness
(minibatches, episode seeds) from the counter-based key, so a resumed run sees the same
data; it defaults to 0 for one-off calls. ``stream`` selects an independent set of
episodes/minibatches for the same generation (stream 0 is the normal evaluation; Deep GA
re-evaluates elite candidates on streams 1, 2, ...); deterministic tasks ignore it.
``validate(phenotype, params)`` scores one
member (the best) on held-out data. ``state_dict``/``load_state_dict`` carry any state a
task accumulates (observation statistics, archives) into checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from neuroevo.core.contracts import Capability
from neuroevo.core.types import Fitness


class TaskParams(BaseModel):
    """Config keys of a task; each task extends this."""

    model_config = ConfigDict(extra="forbid")


class Task(ABC):
    """Base class. ``in_features``/``out_features`` size the network built for this task (0 = none)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[TaskParams]] = TaskParams
    #: what this task offers strategies and the runtime (descriptors, episodes, validation, inputs)
    provides: ClassVar[frozenset[Capability]] = frozenset()
    in_features: int = 0
    out_features: int = 0
    default_output_activation: str = "identity"

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
