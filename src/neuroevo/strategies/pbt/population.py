"""What PBT's ``ask()`` hands out: per-member hyperparameters and who copies whom.

A ``HyperparamPopulation`` does not hold weights: the task trains them (they are its state,
checkpointed with it). It holds, for one ready interval,

- ``values[P, H]``: every member's hyperparameters (``space.decode`` gives the task tensors
  or choice lists by name);
- ``parents[P]``: before training, member ``i`` copies the state saved at the last ready point
  by member ``parents[i]`` (-1: keeps its own). Only members that have a saved state are ever
  named, so a copy never starts from scratch;
- ``steps``: how many training steps each member takes before the next ready point, or
  ``seconds``: if set, each member trains for that long instead (at least one step); the task
  then says how many steps each member took with ``trained`` (``Tensor[P]``);
- ``ready``: asynchronous mode only (``Tensor[P]`` bool): the members that reach a ready point
  at the end of this interval (a *tick*). The task saves their states apart (a member's
  ``parents`` copy reads that saved state), and the others' saved states stay as they were.
  None (synchronous mode): every member is ready and the state after training is the saved one.

The task may ``attach`` the trained members (a callable ``index -> flat weights``) so that the
strategy's ``best`` holds the best member's weights, which the runtime writes to ``best/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroevo.strategies.pbt.space import SearchSpace


@dataclass
class HyperparamPopulation:
    space: SearchSpace
    values: torch.Tensor
    parents: torch.Tensor
    steps: int
    generation: int = 0
    seconds: float | None = None
    trained: torch.Tensor | None = None
    ready: torch.Tensor | None = None
    _weights: Callable[[int], torch.Tensor] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        return self.space.names

    def hyperparams(self) -> dict[str, Any]:
        """Name -> ``Tensor[P]`` (float64) for continuous/integer, list of choices for categorical."""
        return self.space.decode(self.values)

    def trained_steps(self) -> torch.Tensor:
        """``Tensor[P]`` (long): steps each member trained in this interval (``steps`` unless told)."""
        if self.trained is not None:
            return torch.as_tensor(self.trained, dtype=torch.long).reshape(-1).clone()
        return torch.full((len(self),), int(self.steps), dtype=torch.long)

    def attach(self, weights: Callable[[int], torch.Tensor]) -> None:
        """Called by the task after training: ``weights(i)`` is member i's flat parameter vector."""
        self._weights = weights

    def member(self, index: int) -> torch.Tensor:
        """Member ``index``'s trained flat weights if the task attached them, else its hyperparameters."""
        if self._weights is not None:
            return self._weights(index).detach().clone()
        return self.values[index].clone()
