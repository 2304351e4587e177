"""Initialiser registry: the same names in TOML configs and in Python.

An initialiser fills a weight of shape (fan_in, fan_out) (our layout is ``x @ W``) from a
``torch.Generator``. Parametrised ones take keyword arguments: ``uniform(a, b)``,
``normal(std)``; in TOML write ``init = { name = "uniform", a = -1.0, b = 1.0 }``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from neuroevo.core.errors import ConfigError
from neuroevo.core.registry import Registry

Initializer = Callable[..., torch.Tensor]

INITIALIZERS: Registry[Initializer] = Registry("initialiser")


def xavier_uniform(fan_in: int, fan_out: int, gen: torch.Generator, gain: float = 1.0) -> torch.Tensor:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio 2010)"""
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * a


def xavier_normal(fan_in: int, fan_out: int, gen: torch.Generator, gain: float = 1.0) -> torch.Tensor:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))"""
    return torch.randn(fan_in, fan_out, generator=gen) * gain * math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_uniform(fan_in: int, fan_out: int, gen: torch.Generator, gain: float = math.sqrt(2.0)):
    """U(-a, a), a = gain * sqrt(3 / fan_in), gain sqrt(2) for ReLU  (He et al. 2015)"""
    a = gain * math.sqrt(3.0 / fan_in)
    return (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * a


def kaiming_normal(fan_in: int, fan_out: int, gen: torch.Generator, gain: float = math.sqrt(2.0)):
    """N(0, std^2), std = gain / sqrt(fan_in)"""
    return torch.randn(fan_in, fan_out, generator=gen) * gain / math.sqrt(fan_in)


def lecun_normal(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    """N(0, 1 / fan_in)  (LeCun 1998; the SELU initialiser)"""
    return torch.randn(fan_in, fan_out, generator=gen) / math.sqrt(fan_in)


def orthogonal(fan_in: int, fan_out: int, gen: torch.Generator, gain: float = 1.0) -> torch.Tensor:
    """A (semi-)orthogonal matrix from the QR of a Gaussian, sign-corrected (Saxe et al. 2014)"""
    rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if fan_in < fan_out:
        q = q.T
    return (gain * q).to(torch.float32)


def uniform(fan_in: int, fan_out: int, gen: torch.Generator, a: float = -1.0, b: float = 1.0):
    """U(a, b)"""
    return torch.rand(fan_in, fan_out, generator=gen) * (b - a) + a


def normal(fan_in: int, fan_out: int, gen: torch.Generator, std: float = 1.0, mean: float = 0.0):
    """N(mean, std^2)"""
    return torch.randn(fan_in, fan_out, generator=gen) * std + mean


def zeros(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    """all zeros"""
    return torch.zeros(fan_in, fan_out)


for _name, _fn, _aliases in [
    ("xavier_uniform", xavier_uniform, ("glorot_uniform",)),
    ("xavier_normal", xavier_normal, ("glorot_normal",)),
    ("kaiming_uniform", kaiming_uniform, ("he_uniform",)),
    ("kaiming_normal", kaiming_normal, ("he_normal",)),
    ("lecun_normal", lecun_normal, ()),
    ("orthogonal", orthogonal, ()),
    ("uniform", uniform, ()),
    ("normal", normal, ()),
    ("zeros", zeros, ()),
]:
    INITIALIZERS.register(_name, _fn, aliases=_aliases)


def register_initializer(
    name: str, fn: Initializer, *, aliases: tuple[str, ...] = (), overwrite: bool = False
):
    """Add ``fn(fan_in, fan_out, generator, **kwargs) -> Tensor[fan_in, fan_out]`` under ``name``."""
    return INITIALIZERS.register(name, fn, aliases=aliases, overwrite=overwrite)


def initializer_names() -> list[str]:
    return INITIALIZERS.names()


InitSpec = str | dict[str, Any]


def get_initializer(spec: InitSpec, **kwargs: Any) -> Callable[[int, int, torch.Generator], torch.Tensor]:
    """Resolve ``"name"`` or ``{"name": ..., **kwargs}`` to ``fn(fan_in, fan_out, gen)``.

    Unknown names or keyword arguments raise a one-line ConfigError.
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ConfigError(
                f"init = {spec!r}: a table needs a 'name'; allowed: {', '.join(initializer_names())}"
            )
        kwargs = {**spec, **kwargs}
    else:
        name = spec
    fn = INITIALIZERS.get(name)
    import inspect

    allowed = [p for p in inspect.signature(fn).parameters if p not in ("fan_in", "fan_out", "gen")]
    for key in kwargs:
        if key not in allowed:
            names = ", ".join(allowed) if allowed else "(none)"
            raise ConfigError(f"init {name!r} has no parameter {key!r}; allowed: {names}")

    def init(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
        return fn(fan_in, fan_out, gen, **kwargs)

    init.__name__ = str(name)
    return init
