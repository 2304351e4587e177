"""Vectorised optimisers over stacked members: per-member hyperparameters as ``Tensor[P]``.

Every parameter is one tensor ``[P, *shape]`` (``torch.func.stack_module_state`` layout); each
optimiser updates all members with one tensor operation per parameter, with the member's
hyperparameters broadcast along dimension 0. The updates are those of ``torch.optim``:

- ``VectorSGD`` = ``torch.optim.SGD(lr, momentum, weight_decay)`` (dampening 0, no Nesterov):
  ``d = g + wd * p; buf = momentum * buf + d; p -= lr * buf`` (the first step's ``buf = d``
  falls out of a zero buffer);
- ``VectorAdamW`` = ``torch.optim.AdamW(lr, betas, eps, weight_decay)`` (no amsgrad):
  decoupled decay ``p *= 1 - lr * wd``, moments by ``lerp``, bias corrections from each
  member's own step count.

State (momentum buffers, Adam moments, step counts) is a dict of stacked tensors, so an
exploit copies rows of it like rows of the weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch

Stacked = dict[str, torch.Tensor]


def _per_member(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value[P]`` shaped to broadcast against ``like[P, ...]``, in its dtype."""
    return value.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


class VectorOptimizer:
    """Base: ``init_state(params)`` and an in-place ``step(params, grads, state, hp)``."""

    name: ClassVar[str] = ""
    hyperparams: ClassVar[tuple[str, ...]] = ()
    buffers: ClassVar[tuple[str, ...]] = ()

    def init_state(self, params: Stacked) -> dict[str, Stacked]:
        return {b: {k: torch.zeros_like(v) for k, v in params.items()} for b in self.buffers}

    def step(
        self,
        params: Stacked,
        grads: Stacked,
        state: dict[str, Stacked],
        hp: dict[str, torch.Tensor],
        step: torch.Tensor,
    ) -> None:
        raise NotImplementedError


class VectorSGD(VectorOptimizer):
    name = "sgd"
    hyperparams = ("lr", "momentum", "weight_decay")
    buffers = ("momentum_buffer",)

    @torch.no_grad()
    def step(self, params, grads, state, hp, step):
        for key, p in params.items():
            g = grads[key]
            d = g + _per_member(hp["weight_decay"], p) * p
            buf = state["momentum_buffer"][key]
            buf.mul_(_per_member(hp["momentum"], p)).add_(d)
            p.sub_(_per_member(hp["lr"], p) * buf)


class VectorAdamW(VectorOptimizer):
    name = "adamw"
    hyperparams = ("lr", "beta1", "beta2", "eps", "weight_decay")
    buffers = ("exp_avg", "exp_avg_sq")

    @torch.no_grad()
    def step(self, params, grads, state, hp, step):
        """``step[P]``: each member's step count *after* this update (1 on the first)."""
        lr, b1, b2 = hp["lr"].double(), hp["beta1"].double(), hp["beta2"].double()
        steps = step.double()
        step_size = lr / (1 - b1**steps)
        bc2_sqrt = (1 - b2**steps).sqrt()
        decay = 1 - lr * hp["weight_decay"].double()
        for key, p in params.items():
            g = grads[key]
            p.mul_(_per_member(decay, p))
            m, v = state["exp_avg"][key], state["exp_avg_sq"][key]
            m.lerp_(g, _per_member(1 - b1, p))
            v.mul_(_per_member(b2, p)).add_(_per_member(1 - b2, p) * g * g)
            denom = (v.sqrt() / _per_member(bc2_sqrt, p)).add_(_per_member(hp["eps"], p))
            p.sub_(_per_member(step_size, p) * m / denom)


VECTOR_OPTIMIZERS: dict[str, type[VectorOptimizer]] = {"sgd": VectorSGD, "adamw": VectorAdamW}


def copy_rows(tensors: list[torch.Tensor], parents: torch.Tensor) -> torch.Tensor:
    """Exploit: row ``i`` of every tensor becomes row ``parents[i]`` (where ``parents[i] >= 0``).

    All copies read the rows as they were before any copy (one gather per tensor), so they
    are simultaneous. Returns the indices of the rows that were replaced.
    """
    dst = torch.nonzero(parents >= 0).flatten()
    if dst.numel() == 0:
        return dst
    src = parents[dst]
    for t in tensors:
        dst_t, src_t = dst.to(t.device), src.to(t.device)
        t.index_copy_(0, dst_t, t.index_select(0, src_t))
    return dst
