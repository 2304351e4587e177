"""The Phenotype contract: run a whole population in one batched call."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Phenotype(Protocol):
    """Turns a population into outputs: ``forward(population, x[P, B, in] or x[B, in]) -> [P, B, out]``.

    ``init_params(generator)`` draws one member's flat parameters; ``to_module(row)`` exports
    one member as a plain ``torch.nn.Module``; ``spec()`` is a JSON-able description from
    which ``neuroevo.nn.phenotype_from_spec`` rebuilds the phenotype without the run.
    """

    num_params: int
    in_features: int
    out_features: int

    def forward(self, population: Any, x: torch.Tensor) -> torch.Tensor: ...

    def init_params(self, generator: torch.Generator) -> torch.Tensor: ...

    def to_module(self, params: Any) -> torch.nn.Module: ...

    def spec(self) -> dict[str, Any]: ...
