"""Gradient-ascent optimisers and schedules for ES updates (state is tensors, checkpointable)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

OptimizerName = Literal["adam", "sgd"]


class ScheduleParams(BaseModel):
    """Learning rate: linear warmup over ``lr_warmup`` generations, then ``lr * lr_decay**t``."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(0.01, gt=0)
    lr_warmup: int = Field(0, ge=0)
    lr_decay: float = Field(1.0, gt=0, le=1)
    lr_min: float = Field(0.0, ge=0)


def scheduled_lr(generation: int, lr: float, warmup: int, decay: float, lr_min: float) -> float:
    """The learning rate at ``generation`` (0-based)."""
    if warmup and generation < warmup:
        return lr * (generation + 1) / warmup
    return max(lr_min, lr * decay ** (generation - warmup))


class Optimizer:
    """Adam (Kingma & Ba 2015) or SGD with momentum, taking an ascent direction ``grad``."""

    def __init__(
        self,
        name: OptimizerName,
        num_params: int,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        momentum: float = 0.9,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        if name not in ("adam", "sgd"):
            raise ValueError(f"optimizer = {name!r}; allowed: adam, sgd")
        self.name = name
        self.beta1, self.beta2, self.eps, self.momentum = beta1, beta2, eps, momentum
        self.m = torch.zeros(num_params, dtype=dtype, device=device)
        self.v = torch.zeros(num_params, dtype=dtype, device=device) if name == "adam" else None
        self.t = 0

    def step(self, grad: torch.Tensor, lr: float) -> torch.Tensor:
        """The update to ADD to the parameters for ascent direction ``grad``."""
        self.t += 1
        if self.name == "sgd":
            self.m.mul_(self.momentum).add_(grad)
            return lr * self.m
        self.m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return lr * m_hat / (v_hat.sqrt() + self.eps)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"t": self.t, "m": self.m}
        if self.v is not None:
            state["v"] = self.v
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.m = state["m"].to(self.m).clone()  # never share buffers that are updated in place
        if self.v is not None:
            self.v = state["v"].to(self.v).clone()
