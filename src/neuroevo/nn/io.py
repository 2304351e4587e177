"""What an exported network does around its core: take what the data set or env gives, return what it expects.

A task describes its preprocessing and output mapping as a JSON-able *io spec*
(``Task.export_io()``, the ``ExportsIO`` protocol); ``best/network.json`` stores it under
``"io"`` and ``with_io(module, io)`` wraps the bare network in the same steps, as plain
modules whose tensors are buffers (so ``state_dict``, safetensors and ``torch.export`` carry
them)::

    {"env": "CartPole-v1",                                  # optional: the Gymnasium env it acts in
     "input": [{"one_hot": {"n": 16}},                      # steps in order: a Discrete observation
               {"standardize": {"mean": [...], "std": [...]}}],  # as a one-hot row; (x - mean) / std
     "output": {"discrete": {"n": 2, "start": 0}}           # argmax -> an action index
            | {"box": {"low": [...], "high": [...],         # low + (tanh(y) + 1) / 2 * (high - low)
                       "bounded": [...]}}                   # (optional) dims without bounds pass y
            | {"classes": {"n": 10}},                        # logits, unchanged (argmax is the label)
     "describe": {"input": "...", "output": "..."}}          # the contract in words (README, `best`)

The output steps are exactly the runtime's action mapping
(``neuroevo.tasks.control.policy.map_actions`` in its deterministic mode).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with the statistics the run used (a data-set scaler or running obs stats)."""

    def __init__(self, mean: Any, std: Any):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(-1))
        self.register_buffer("inv_std", torch.as_tensor(std, dtype=torch.float32).reshape(-1).reciprocal())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.mean.dtype) - self.mean) * self.inv_std


class OneHot(nn.Module):
    """A Discrete observation ``x[B]`` (or ``x[B, 1]``) as one-hot rows ``[B, n]``."""

    def __init__(self, n: int):
        super().__init__()
        self.n = int(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x.reshape(x.shape[0]).long(), self.n).float()


class DiscreteAction(nn.Module):
    """Argmax over the first ``n`` outputs, plus the action space's ``start``: a Discrete action index."""

    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.n, self.start = int(n), int(start)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y[..., : self.n].argmax(-1) + self.start


class BoxAction(nn.Module):
    """``low + (tanh(y) + 1) / 2 * (high - low)``: a continuous action inside the Box bounds."""

    def __init__(self, low: Any, high: Any, bounded: Any = None):
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).reshape(-1))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).reshape(-1))
        mask = torch.ones_like(self.low, dtype=torch.bool) if bounded is None else torch.as_tensor(bounded)
        self.register_buffer("bounded", mask.reshape(-1).bool())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = y[..., : self.low.numel()].to(self.low.dtype)
        squashed = self.low + (torch.tanh(y) + 1.0) * 0.5 * (self.high - self.low)
        return torch.where(self.bounded, squashed, y)


def io_steps(io: dict[str, Any] | None) -> tuple[nn.Module | None, nn.Module | None]:
    """The (input, output) modules an io spec describes; None where there is no step."""
    io = io or {}
    pre = post = None
    steps: list[nn.Module] = []
    for step in io.get("input") or []:
        if "one_hot" in step:
            steps.append(OneHot(step["one_hot"]["n"]))
        elif "standardize" in step:
            steps.append(Standardize(step["standardize"]["mean"], step["standardize"]["std"]))
    if steps:
        pre = steps[0] if len(steps) == 1 else nn.Sequential(*steps)
    output = io.get("output") or {}
    if "discrete" in output:
        post = DiscreteAction(output["discrete"]["n"], output["discrete"].get("start", 0))
    elif "box" in output:
        post = BoxAction(output["box"]["low"], output["box"]["high"], output["box"].get("bounded"))
    return pre, post


class WithIO(nn.Module):
    """A network between its input preprocessing and its output mapping (raw in, expected out)."""

    def __init__(self, network: nn.Module, io: dict[str, Any] | None):
        super().__init__()
        pre, post = io_steps(io)
        self.input = pre if pre is not None else nn.Identity()
        self.network = network
        self.output = post if post is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.network(self.input(x)))


def with_io(network: nn.Module, io: dict[str, Any] | None) -> nn.Module:
    """``network`` wrapped in its io steps (returned unchanged when the spec has none)."""
    pre, post = io_steps(io)
    if pre is None and post is None:
        return network
    return WithIO(network, io)
