"""Activation registry. Every function maps a tensor elementwise; its formula is in its docstring.

Register your own with ``register_activation("name", fn)``; the name then works in configs,
per layer or per neuron, and in NEAT's activation mutation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from neuroevo.core.registry import Registry

Activation = Callable[[torch.Tensor], torch.Tensor]


def _plugin_activation(name: str, obj: object) -> Activation:
    if not callable(obj):
        raise TypeError(f"expected a function tensor -> tensor, got {obj!r}")
    return obj


#: name -> elementwise function; plugins: entry-point group ``neuroevo.activations``
#: (the function's docstring is its description)
ACTIVATIONS: Registry[Activation] = Registry("activation", "neuroevo.activations", _plugin_activation)


def register_activation(name: str, fn: Activation, *, aliases: tuple[str, ...] = (), overwrite: bool = False):
    """Add ``fn`` (elementwise, shape-preserving) under ``name``."""
    return ACTIVATIONS.register(name, fn, aliases=aliases, overwrite=overwrite)


def get_activation(name: str) -> Activation:
    """The activation registered as ``name`` (or an alias); a ConfigError lists the allowed names."""
    return ACTIVATIONS.get(name)


def activation_names() -> list[str]:
    return ACTIVATIONS.names()


def identity(x):
    """f(x) = x"""
    return x


def sigmoid(x):
    """f(x) = 1 / (1 + exp(-x))"""
    return torch.sigmoid(x)


def neat_sigmoid(x):
    """f(x) = 1 / (1 + exp(-4.9 x))  (the steepened sigmoid of the NEAT paper)"""
    return torch.sigmoid(4.9 * x)


def tanh(x):
    """f(x) = tanh(x)"""
    return torch.tanh(x)


def relu(x):
    """f(x) = max(0, x)"""
    return torch.relu(x)


def leaky_relu(x):
    """f(x) = x if x > 0 else 0.01 x"""
    return F.leaky_relu(x, 0.01)


def elu(x):
    """f(x) = x if x > 0 else exp(x) - 1"""
    return F.elu(x)


def selu(x):
    """f(x) = 1.0507 * (x if x > 0 else 1.67326 (exp(x) - 1))"""
    return F.selu(x)


def gelu(x):
    """f(x) = x * Phi(x), Phi the standard normal CDF"""
    return F.gelu(x)


def silu(x):
    """f(x) = x * sigmoid(x)  (a.k.a. swish)"""
    return F.silu(x)


def mish(x):
    """f(x) = x * tanh(softplus(x))"""
    return F.mish(x)


def softplus(x):
    """f(x) = log(1 + exp(x))"""
    return F.softplus(x)


def softsign(x):
    """f(x) = x / (1 + |x|)"""
    return F.softsign(x)


def sin(x):
    """f(x) = sin(x)"""
    return torch.sin(x)


def cos(x):
    """f(x) = cos(x)"""
    return torch.cos(x)


def gauss(x):
    """f(x) = exp(-x^2)"""
    return torch.exp(-x * x)


def abs_(x):
    """f(x) = |x|"""
    return torch.abs(x)


def square(x):
    """f(x) = x^2"""
    return x * x


def cube(x):
    """f(x) = x^3"""
    return x * x * x


def step(x):
    """f(x) = 1 if x > 0 else 0"""
    return (x > 0).to(x.dtype)


def hard_tanh(x):
    """f(x) = clamp(x, -1, 1)"""
    return F.hardtanh(x)


def relu2(x):
    """f(x) = max(0, x)^2  (squared ReLU)"""
    r = torch.relu(x)
    return r * r


def snake(x):
    """f(x) = x + sin(x)^2  (snake with a = 1)"""
    s = torch.sin(x)
    return x + s * s


def inv(x):
    """f(x) = 1 / x, with |x| clamped to at least 1e-7 and 0 mapped to 0 (as neat-python)"""
    safe = torch.where(x.abs() < 1e-7, torch.full_like(x, math.inf), x)
    return 1.0 / safe


def log_clamped(x):
    """f(x) = log(max(x, 1e-7))"""
    return torch.log(torch.clamp(x, min=1e-7))


def exp_clamped(x):
    """f(x) = exp(clamp(x, -60, 60))"""
    return torch.exp(torch.clamp(x, -60.0, 60.0))


def clamped(x):
    """f(x) = clamp(x, -1, 1)  (neat-python's 'clamped'; same curve as hard_tanh)"""
    return torch.clamp(x, -1.0, 1.0)


def hat(x):
    """f(x) = max(0, 1 - |x|)"""
    return torch.clamp(1.0 - x.abs(), min=0.0)


def sign(x):
    """f(x) = sign(x) in {-1, 0, 1}"""
    return torch.sign(x)


for _name, _fn, _aliases in [
    ("identity", identity, ("linear", "none")),
    ("sigmoid", sigmoid, ()),
    ("neat_sigmoid", neat_sigmoid, ()),
    ("tanh", tanh, ()),
    ("relu", relu, ()),
    ("leaky_relu", leaky_relu, ("lelu",)),
    ("elu", elu, ()),
    ("selu", selu, ()),
    ("gelu", gelu, ()),
    ("silu", silu, ("swish",)),
    ("mish", mish, ()),
    ("softplus", softplus, ()),
    ("softsign", softsign, ()),
    ("sin", sin, ()),
    ("cos", cos, ()),
    ("gauss", gauss, ("gaussian",)),
    ("abs", abs_, ()),
    ("square", square, ()),
    ("cube", cube, ()),
    ("step", step, ()),
    ("hard_tanh", hard_tanh, ("hardtanh",)),
    ("relu2", relu2, ("squared_relu",)),
    ("snake", snake, ()),
    ("inv", inv, ()),
    ("log", log_clamped, ("log_clamped",)),
    ("exp", exp_clamped, ("exp_clamped",)),
    ("clamped", clamped, ()),
    ("hat", hat, ()),
    ("sign", sign, ()),
]:
    register_activation(_name, _fn, aliases=_aliases)


INPLACE: dict[str, Activation] = {
    "identity": lambda t: t,
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
    "neat_sigmoid": lambda t: torch.sigmoid_(t.mul_(4.9)),
}
"""In-place versions of common activations, for callers that own the tensor they activate."""


def apply_mixed(z: torch.Tensor, groups: list[tuple[Activation, torch.Tensor | None]]) -> torch.Tensor:
    """Apply per-neuron activations along the last dim of ``z``.

    ``groups`` holds one (activation, neuron index tensor) pair per distinct activation of the
    layer (index None means all neurons), so the loop runs over activation kinds, never neurons.
    """
    if len(groups) == 1 and groups[0][1] is None:
        return groups[0][0](z)
    parts = [fn(z.index_select(-1, idx)) for fn, idx in groups]
    order = torch.cat([idx for _, idx in groups])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(parts, dim=-1).index_select(-1, inverse)
