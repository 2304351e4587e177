"""Gradient-ascent optimisers and the learning-rate schedule for ES updates.

An optimiser object holds only its hyperparameters; what it carries between steps (Adam's
moments, SGD's momentum buffer) is a ``MomentState`` that lives in the strategy's state
container, so it is checkpointed with the rest of the search state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, Field

OptimizerName = Literal["adam", "sgd"]
ADAM_EPS = 1e-8  # Adam's denominator guard (Kingma & Ba 2015); not a config key


class MomentumParams(BaseModel):
    """Optimiser keys shared by OpenES, EGGROLL and PGPE (mixed into their ``Params``)."""

    momentum: float = Field(0.9, ge=0, lt=1, description="SGD (and ClipUp) momentum")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam: decay of the first moment")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam: decay of the second moment")


def scheduled_lr(generation: int, lr: float, warmup: int, decay: float, lr_min: float) -> float:
    """The learning rate at ``generation`` (0-based): linear warmup, then ``lr * decay**t``."""
    if warmup and generation < warmup:
        return lr * (generation + 1) / warmup
    return max(lr_min, lr * decay ** (generation - warmup))


@dataclass
class MomentState:
    """What Adam or SGD carries between steps: the step count and the moment buffers."""

    t: int
    m: torch.Tensor
    v: torch.Tensor | None  # Adam's second moment; None for SGD


class Optimizer:
    """Adam (Kingma & Ba 2015) or SGD with momentum, taking an ascent direction ``grad``."""

    def __init__(
        self, name: OptimizerName, *, beta1: float = 0.9, beta2: float = 0.999, momentum: float = 0.9
    ):
        if name not in ("adam", "sgd"):
            raise ValueError(f"optimizer = {name!r}; allowed: adam, sgd")
        self.name = name
        self.beta1, self.beta2, self.eps, self.momentum = beta1, beta2, ADAM_EPS, momentum

    def init_state(
        self, num_params: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> MomentState:
        """Zero moments for ``num_params`` parameters."""
        m = torch.zeros(num_params, dtype=dtype, device=device)
        v = torch.zeros(num_params, dtype=dtype, device=device) if self.name == "adam" else None
        return MomentState(t=0, m=m, v=v)

    def step(self, state: MomentState, grad: torch.Tensor, lr: float) -> torch.Tensor:
        """The update to ADD to the parameters for ascent direction ``grad`` (advances ``state``)."""
        state.t += 1
        if self.name == "sgd":
            state.m.mul_(self.momentum).add_(grad)
            return lr * state.m
        state.m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        state.v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        # lr * m_hat / (sqrt(v_hat) + eps) in two temporaries instead of five (D can be 10^7),
        # with the same operations in the same order as the textbook form, so the same bits
        bias1, bias2 = 1 - self.beta1**state.t, 1 - self.beta2**state.t
        step = torch.div(state.v, bias2).sqrt_().add_(self.eps)
        return torch.div(state.m, bias1).mul_(lr).div_(step)
