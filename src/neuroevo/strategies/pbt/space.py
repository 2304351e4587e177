"""The PBT search space: continuous (optionally log-scale), integer and categorical hyperparameters.

Values of a whole population live in one ``float64`` tensor ``[P, H]`` (one column per
hyperparameter, in the order of the space): continuous and integer columns hold the value,
categorical columns hold the index of the choice. Every operation here maps such a tensor to
another one that is inside the bounds, by construction:

- ``sample(u)``: from the prior (uniform, or log-uniform for ``log = true``) given uniforms ``u``;
- ``perturb(values, factor, resample, u)``: Jaderberg et al. 2017's explore step. A continuous
  value is multiplied by its factor (0.8 or 1.2 by default); a log-scale one is moved by
  ``log(factor)`` in log space. An integer is multiplied and rounded, and moves by at least 1.
  A categorical value moves to a neighbouring choice (down for a factor < 1, up otherwise; at
  either end the only neighbour). Where ``resample`` is true the value is drawn from the prior.
- Out-of-bounds results are **clipped** to the bound (``bounds = "clip"``, default) or
  **reflected** off it (``bounds = "reflect"``: ``high + d`` becomes ``high - d``, then clipped
  in case ``d`` exceeds the range); log-scale values are clipped/reflected in log space.
- ``to_unit``/``from_unit``: the [0, 1] coordinates PB2's Gaussian process works in.

Reversed or empty bounds (``low >= high``), a log scale over non-positive bounds, and fewer
than two categorical choices are ``ConfigError``s naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from neuroevo.core.errors import ConfigError

Bounds = Literal["clip", "reflect"]
Choice = bool | int | float | str


class HyperparamSpec(BaseModel):
    """One hyperparameter of the space: ``[strategy.space.NAME]`` in a config."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["continuous", "integer", "categorical"] = Field(
        "continuous", description="continuous | integer | categorical"
    )
    low: float | None = Field(None, description="lower bound (continuous, integer)")
    high: float | None = Field(None, description="upper bound (continuous, integer)")
    log: bool = Field(False, description="sample and perturb in log space (needs low > 0)")
    choices: list[Choice] | None = Field(None, description="the values of a categorical hyperparameter")

    @model_validator(mode="after")
    def _consistent(self) -> HyperparamSpec:
        if self.type == "categorical":
            if self.choices is None or len(self.choices) < 2:
                raise ValueError(f"choices = {self.choices!r}; allowed: a list of at least 2 values")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical hyperparameter takes choices, not low/high/log")
            return self
        if self.choices is not None:
            raise ValueError(f"choices given for a {self.type} hyperparameter; allowed: low, high, log")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} hyperparameter needs both low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"bounds must be finite (low = {self.low}, high = {self.high})")
        if self.low >= self.high:
            raise ValueError(
                f"reversed or empty bounds (low = {self.low} >= high = {self.high}); allowed: low < high"
            )
        if self.type == "integer" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"integer bounds must be whole numbers (low = {self.low}, high = {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (low = {self.low})")
        return self


@dataclass(frozen=True)
class Hyperparam:
    """A validated hyperparameter: its name and spec, with the transforms the operations use."""

    name: str
    spec: HyperparamSpec

    @property
    def kind(self) -> str:
        return self.spec.type

    @property
    def bounded(self) -> bool:
        """Continuous or integer: PB2's GP models these."""
        return self.kind != "categorical"

    # bounds in the coordinate the operations work in (log space for log-scale values)
    def _z_bounds(self) -> tuple[float, float]:
        if self.kind == "categorical":
            return 0.0, float(len(self.spec.choices) - 1)
        low, high = float(self.spec.low), float(self.spec.high)
        return (math.log(low), math.log(high)) if self.spec.log else (low, high)

    def _to_z(self, v: torch.Tensor) -> torch.Tensor:
        return v.log() if self.spec.log and self.kind != "categorical" else v

    def _from_z(self, z: torch.Tensor) -> torch.Tensor:
        return z.exp() if self.spec.log and self.kind != "categorical" else z

    def limit(self, v: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """Bring ``v`` into the bounds by clipping or reflecting (in log space for log scale)."""
        a, b = self._z_bounds()
        z = self._to_z(v)
        if bounds == "reflect":
            z = torch.where(z > b, 2 * b - z, z)
            z = torch.where(z < a, 2 * a - z, z)
        z = z.clamp(a, b)
        out = self._from_z(z)
        if self.kind == "integer":
            out = out.round().clamp(self.spec.low, self.spec.high)
        elif self.kind == "continuous":  # exp(log(high)) may round past high
            out = out.clamp(self.spec.low, self.spec.high)
        return out

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        """Prior draws from uniforms ``u`` in [0, 1): uniform, log-uniform, or uniform over values/choices."""
        if self.kind == "categorical":
            k = len(self.spec.choices)
            return (u * k).floor().clamp(0, k - 1)
        if self.kind == "integer":
            low, high = float(self.spec.low), float(self.spec.high)
            if self.spec.log:  # log-uniform over [low - 0.5, high + 0.5], rounded
                a, b = math.log(max(low - 0.5, 0.5)), math.log(high + 0.5)
                return torch.exp(a + u * (b - a)).round().clamp(low, high)
            return (low + u * (high - low + 1)).floor().clamp(low, high)
        a, b = self._z_bounds()
        return self.limit(self._from_z(a + u * (b - a)), "clip")

    def perturb(self, v: torch.Tensor, factor: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """Jaderberg's perturbation by ``factor`` (per member), then bounded."""
        up = factor > 1
        if self.kind == "categorical":
            k = len(self.spec.choices)
            moved = v + torch.where(up, 1.0, -1.0)
            moved = torch.where(moved > k - 1, v - 1, moved)  # at an end: the only neighbour
            return torch.where(moved < 0, v + 1, moved).clamp(0, k - 1)
        if self.spec.log:
            out = self._from_z(self._to_z(v) + factor.log())
        else:
            out = v * factor
        if self.kind == "integer":
            out = out.round()
            out = torch.where(out == v, v + torch.where(up, 1.0, -1.0), out)  # move by at least 1
        return self.limit(out, bounds)

    def to_unit(self, v: torch.Tensor) -> torch.Tensor:
        a, b = self._z_bounds()
        return (self._to_z(v) - a) / (b - a)

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        a, b = self._z_bounds()
        return self.limit(self._from_z(a + u.clamp(0, 1) * (b - a)), "clip")

    def contains(self, v: torch.Tensor) -> torch.Tensor:
        """True where ``v`` is a legal value (in bounds; whole for integer and categorical)."""
        if self.kind == "categorical":
            return (v >= 0) & (v <= len(self.spec.choices) - 1) & (v == v.round())
        ok = (v >= self.spec.low) & (v <= self.spec.high)
        return ok & (v == v.round()) if self.kind == "integer" else ok

    def decode(self, column: torch.Tensor) -> torch.Tensor | list[Choice]:
        """The values a task reads: a float64 tensor, or the list of categorical choices."""
        if self.kind == "categorical":
            return [self.spec.choices[int(i)] for i in column.tolist()]
        return column.clone()

    def value(self, v: float) -> Choice:
        """One JSON value for reports."""
        if self.kind == "categorical":
            return self.spec.choices[int(v)]
        return int(v) if self.kind == "integer" else float(v)


class SearchSpace:
    """An ordered set of hyperparameters; vectorised operations over ``values[P, H]``."""

    def __init__(
        self, params: Mapping[str, HyperparamSpec | Mapping[str, Any]], *, key: str = "strategy.space"
    ):
        if not params:
            raise ConfigError(f"{key} = {{}}: empty search space; allowed: at least one hyperparameter")
        items: list[Hyperparam] = []
        for name, spec in params.items():
            if not isinstance(spec, HyperparamSpec):
                try:
                    spec = HyperparamSpec.model_validate(dict(spec))
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ConfigError(f"{key}.{name} = {dict(spec)!r}: {msg}") from None
            items.append(Hyperparam(str(name), spec))
        self.params: tuple[Hyperparam, ...] = tuple(items)
        self.names: tuple[str, ...] = tuple(p.name for p in items)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def bounded_columns(self) -> list[int]:
        """Columns of continuous and integer hyperparameters (those PB2 models)."""
        return [i for i, p in enumerate(self.params) if p.bounded]

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        """``[n, H]`` prior draws from uniforms ``u[n, H]``."""
        return torch.stack([p.sample(u[:, i]) for i, p in enumerate(self.params)], 1)

    def perturb(
        self,
        values: torch.Tensor,
        factor: torch.Tensor,
        resample: torch.Tensor,
        u: torch.Tensor,
        bounds: Bounds = "clip",
    ) -> torch.Tensor:
        """Explore: ``values[n, H]`` times ``factor[n, H]``; resampled from ``u`` where ``resample``."""
        fresh = self.sample(u)
        moved = torch.stack(
            [p.perturb(values[:, i], factor[:, i], bounds) for i, p in enumerate(self.params)], 1
        )
        return torch.where(resample, fresh, moved)

    def to_unit(self, values: torch.Tensor, columns: list[int]) -> torch.Tensor:
        return torch.stack([self.params[i].to_unit(values[:, i]) for i in columns], 1)

    def from_unit(self, unit: torch.Tensor, columns: list[int]) -> torch.Tensor:
        return torch.stack([self.params[i].from_unit(unit[:, j]) for j, i in enumerate(columns)], 1)

    def contains(self, values: torch.Tensor) -> torch.Tensor:
        """``[n]``: True where every hyperparameter of the row is legal."""
        return torch.stack([p.contains(values[:, i]) for i, p in enumerate(self.params)], 1).all(1)

    def decode(self, values: torch.Tensor) -> dict[str, torch.Tensor | list[Choice]]:
        return {p.name: p.decode(values[:, i]) for i, p in enumerate(self.params)}

    def encode(self, row: Mapping[str, Choice]) -> torch.Tensor:
        """Inverse of ``row``: one member's JSON values -> ``[H]`` (categorical -> choice index)."""
        out = []
        for p in self.params:
            value = row[p.name]
            out.append(float(p.spec.choices.index(value)) if p.kind == "categorical" else float(value))
        return torch.tensor(out, dtype=torch.float64)

    def row(self, values: torch.Tensor) -> dict[str, Choice]:
        """One member's values as JSON (for ``pbt.jsonl`` and the exported schedule)."""
        return {p.name: p.value(float(values[i])) for i, p in enumerate(self.params)}
