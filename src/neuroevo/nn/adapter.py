"""ModuleAdapter: evolve the parameters of any ``torch.nn.Module``.

The population is a ``[P, D]`` tensor of flattened parameters (in ``named_parameters``
order). The forward pass is ``torch.func.functional_call`` vmapped over members, so the
user's module runs once per generation for the whole population, not once per member.
Buffers (batch-norm statistics and the like) are shared and not evolved.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call, vmap

from neuroevo.core.errors import ConfigError
from neuroevo.core.imports import load_object
from neuroevo.nn.networks import NetworkParams, register_network


class ModuleAdapter:
    """Wraps ``module`` as a Phenotype.

    ``in_features`` sizes the example input of a ``.pt2`` export. ``factory`` is the import
    path (``"pkg.mod:make"`` or ``"file.py:Net"``) of a no-argument callable that builds the
    module; it defaults to the module's own class, so ``neuroevo best`` can rebuild it. A
    module that needs constructor arguments and has no factory still exports its weights
    (``--export weights.safetensors``).
    """

    def __init__(
        self, module: nn.Module, in_features: int = 0, out_features: int = 0, *, factory: str | None = None
    ):
        self.module = module
        cls = type(module)
        self.factory = factory or f"{cls.__module__}:{cls.__qualname__}"
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.numels = [math.prod(s) for s in self.shapes]
        self.num_params = sum(self.numels)
        self.in_features = in_features
        self.out_features = out_features
        self.buffers = dict(module.named_buffers())

    def flat_params(self, module: nn.Module | None = None) -> torch.Tensor:
        """The module's current parameters as one flat vector ``[D]``."""
        module = self.module if module is None else module
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat ``[D]`` (or ``[P, D]``) vector into named parameter views."""
        lead = flat.shape[:-1]
        out = {}
        for name, shape, chunk in zip(self.names, self.shapes, flat.split(self.numels, dim=-1), strict=True):
            out[name] = chunk.reshape(*lead, *shape)
        return out

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """Re-run each submodule's ``reset_parameters`` under a seed drawn from ``generator``."""
        fresh = copy.deepcopy(self.module)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for sub in fresh.modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
        return self.flat_params(fresh)

    def forward(self, params: torch.Tensor, x: torch.Tensor, per_member: bool | None = None) -> torch.Tensor:
        """Outputs ``[P, B, ...]`` for ``params[P, D]`` and ``x[P, B, ...]`` or shared ``x[B, ...]``.

        ``x`` counts as per-member when it has 3 or more dims and its first is P, unless
        ``per_member`` says otherwise (for modules whose own inputs are 3-D).
        """
        single = params.dim() == 1
        if single:
            params = params.unsqueeze(0)
        if per_member is None:
            per_member = not single and x.dim() >= 3 and x.shape[0] == params.shape[0]
        shared = not per_member

        def run(flat: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, ({**self.unflatten(flat), **self.buffers},), (inputs,))

        out = vmap(run, in_dims=(0, None if shared else 0), randomness="different")(params, x)
        return out[0] if single else out

    __call__ = forward

    def to_module(self, params: torch.Tensor) -> nn.Module:
        """A deep copy of the wrapped module holding member ``params[D]``."""
        module = copy.deepcopy(self.module)
        with torch.no_grad():
            for p, value in zip(module.parameters(), self.unflatten(params).values(), strict=True):
                p.copy_(value)
        return module

    def state_dict(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """One member's ``state_dict`` (parameters from ``params``, buffers from the module)."""
        return self.to_module(params).state_dict()

    def named_tensors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in self.state_dict(params).items()}

    def spec(self) -> dict[str, Any]:
        return {
            "type": "module",
            "module": self.factory,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "parameters": dict(zip(self.names, [list(s) for s in self.shapes], strict=True)),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ModuleAdapter:
        """Rebuild by calling the recorded factory as the run did; its parameters must match the spec."""
        module = build_module(
            spec["module"], "network.module", spec.get("in_features", 0), spec.get("out_features", 0)
        )
        adapter = cls(module, spec.get("in_features", 0), spec.get("out_features", 0), factory=spec["module"])
        shapes = dict(zip(adapter.names, [list(s) for s in adapter.shapes], strict=True))
        if shapes != spec.get("parameters", shapes):
            raise ConfigError(
                f"network.module = {spec['module']!r} builds parameters {shapes}, not the run's "
                f"{spec['parameters']}; allowed: a no-argument factory (ModuleAdapter(module, "
                "factory='pkg.mod:make')), or export the weights (--export weights.safetensors)"
            )
        return adapter


def build_module(path: str, key: str, in_features: int = 0, out_features: int = 0) -> nn.Module:
    """Call the class or factory at ``path``; a one-line ConfigError when that fails.

    A factory whose signature names ``in_features``/``out_features`` is given the task's
    sizes (so one factory fits any task); otherwise it is called with no arguments.
    """
    factory = load_object(path, key)
    try:
        names = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        names = set()
    sizes = {"in_features": in_features, "out_features": out_features}
    kwargs = {k: v for k, v in sizes.items() if k in names}
    try:
        module = factory(**kwargs)
    except Exception as exc:  # a user's constructor: name it and why it failed
        raise ConfigError(
            f"{key} = {path!r} cannot be built without arguments ({type(exc).__name__}: {exc}); allowed: "
            "a no-argument factory (ModuleAdapter(module, factory='pkg.mod:make')), or export the "
            "weights (--export weights.safetensors)"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{key} = {path!r} returned {type(module).__name__}; allowed: a torch.nn.Module")
    return module


class ModuleParams(NetworkParams):
    """``[network] type = "module"``: any ``torch.nn.Module`` built by a no-argument factory."""

    module: str = Field(
        ...,
        description="import path of its class or factory ('pkg.mod:Net' or 'file.py:Net'), given "
        "in_features/out_features when it takes them",
    )


def build_adapter(
    params: ModuleParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    **kw: Any,
) -> ModuleAdapter:
    """The user's module, sized by its own constructor (the task's sizes are recorded for export)."""
    return ModuleAdapter(
        build_module(params.module, "network.module", in_features, out_features),
        in_features,
        out_features,
        factory=params.module,
    )


register_network(
    "module",
    ModuleParams,
    build_adapter,
    from_spec=ModuleAdapter.from_spec,
    description="any torch.nn.Module built by a no-argument factory (ModuleAdapter)",
)
