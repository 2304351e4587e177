"""Low-rank populations (EGGROLL) and the phenotypes that run them without expanding them.

EGGROLL (Evolution Strategies at the Hyperscale, 2025) perturbs every weight matrix
``W (m x n)`` of member ``i`` by ``sigma * E_i`` with ``E_i = A_i B_i^T / sqrt(r)``,
``A_i (m x r)``, ``B_i (n x r)`` standard normal; every other parameter (biases, norms,
convolutions) gets ordinary full-rank Gaussian noise. Members come in antithetic pairs
(``i`` and ``i + P/2`` share factors with opposite signs).

``LowRankPopulation`` is what ``EGGROLL.ask()`` hands out: the centre ``[D]``, ``sigma``,
the per-pair factors of each matrix and the per-pair noise of the other entries, plus the
(seed, generation) key they were drawn from. It is never expanded to ``P x m x n``:
``member(i)`` materialises one member (for ``best``), ``materialize()`` all of them (small
networks and tests only).

A matrix slot is ``(offset, rows, cols)``: ``params[offset : offset + rows * cols]`` viewed
row-major as ``rows x cols``. ``PopulationMLP`` stores ``W_l`` as ``in x out`` (``x @ W``);
``nn.Linear`` stores ``weight`` as ``out x in`` (``x @ W^T``). The perturbed forward is
``x @ W + sigma ((x A_i) B_i^T) / sqrt(r)`` (respectively ``x W^T + sigma ((x B_i) A_i^T) /
sqrt(r)``): one shared GEMM with the centre weights for the whole population plus two thin
batched matmuls of width ``r``.

Two phenotypes run both kinds of population (a plain ``[P, D]`` tensor as well):

- ``EggrollMLP`` wraps a ``PopulationMLP``; configs select it with
  ``[network] type = "eggroll_mlp"`` (the same keys as ``mlp``). We register a network type
  rather than let the strategy wrap the phenotype because the runtime hands the task the
  phenotype the config built: the wrapper must be that phenotype.
- ``EggrollModule`` wraps a ``ModuleAdapter``: the ``nn.Linear`` layers (exactly that type)
  of the user's module get low-rank noise, everything else full-rank noise; the module runs
  under ``torch.func.functional_call`` vmapped over members with the Linear layers swapped
  for a low-rank-aware copy.

``spec()`` of both is the wrapped network's spec (type ``mlp`` / ``module``): how a
population is run does not change the network, so a saved best member loads without this
module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from neuroevo.core.contracts import PopulationKind
from neuroevo.nn.activations import apply_mixed, get_activation
from neuroevo.nn.adapter import ModuleAdapter
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.nn.networks import MLPParams, build_mlp, mlp_config, register_network

Slot = tuple[int, int, int]  # (offset, rows, cols)

# activations applied in place on freshly computed layer outputs (saves one P x B x n buffer)
_INPLACE = {"identity": lambda t: t, "relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_}


def slot_ranks(slots: Sequence[Slot], rank: int) -> list[int]:
    """The rank used for each matrix: ``rank`` capped at ``min(rows, cols)`` (full rank)."""
    return [max(1, min(rank, rows, cols)) for _, rows, cols in slots]


def vector_index(num_params: int, slots: Sequence[Slot]) -> torch.Tensor:
    """Flat positions of the parameters that are not in any matrix slot (they get full-rank noise)."""
    mask = torch.ones(num_params, dtype=torch.bool)
    for offset, rows, cols in slots:
        mask[offset : offset + rows * cols] = False
    return mask.nonzero().reshape(-1)


@dataclass
class LowRankPopulation:
    """A centre plus per-pair low-rank factors: P members, never expanded to ``P x m x n``.

    ``a[k]``: ``[H, rows_k, r_k]``, ``b[k]``: ``[H, cols_k, r_k]``, ``vector_noise``:
    ``[H, len(vector_index)]`` with ``H = P / 2`` pairs (antithetic) or ``H = P``. Member
    ``i`` uses pair ``i mod H`` with sign ``+1`` for ``i < H`` and ``-1`` after.
    """

    center: torch.Tensor
    sigma: float
    slots: list[Slot]
    ranks: list[int]
    a: list[torch.Tensor]
    b: list[torch.Tensor]
    vector_index: torch.Tensor
    vector_noise: torch.Tensor
    size: int
    antithetic: bool = True
    seed: int = 0
    generation: int = 0
    _cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return self.size

    @property
    def pairs(self) -> int:
        return self.a[0].shape[0] if self.a else self.vector_noise.shape[0]

    def signs(self) -> torch.Tensor:
        """``[P]`` of +1/-1 (all +1 without antithetic sampling), in the centre's dtype."""
        s = torch.ones(self.size, dtype=self.center.dtype, device=self.center.device)
        if self.antithetic:
            s[self.pairs :] = -1
        return s

    def pair_index(self) -> torch.Tensor:
        return torch.arange(self.size, device=self.center.device) % self.pairs

    # The per-member views below are P x (m + n) x r at most (never P x m x n); they are
    # cached because a control rollout runs the same population for hundreds of steps.
    def scaled_a(self, k: int) -> torch.Tensor:
        """``[P, rows, r]``: member i's ``A_i`` times ``sign_i * sigma / sqrt(r)``."""
        if ("a", k) not in self._cache:
            scale = self.signs() * (self.sigma / math.sqrt(self.ranks[k]))
            self._cache["a", k] = self.a[k][self.pair_index()] * scale.view(-1, 1, 1)
        return self._cache["a", k]

    def b_factors(self, k: int) -> torch.Tensor:
        """``[P, cols, r]``: member i's ``B_i``."""
        if ("b", k) not in self._cache:
            self._cache["b", k] = self.b[k][self.pair_index()]
        return self._cache["b", k]

    def vector_perturbation(self) -> torch.Tensor:
        """``[P, Dv]``: ``sigma * sign_i * noise`` for the entries outside the matrices."""
        if "v" not in self._cache:
            self._cache["v"] = self.vector_noise[self.pair_index()] * (self.signs() * self.sigma).unsqueeze(1)
        return self._cache["v"]

    def vector_values(self) -> torch.Tensor:
        """``[P, Dv]``: every member's entries outside the matrices (centre + perturbation)."""
        if "values" not in self._cache:
            self._cache["values"] = self.center[self.vector_index] + self.vector_perturbation()
        return self._cache["values"]

    def member(self, i: int) -> torch.Tensor:
        """Member ``i`` as a flat ``[D]`` vector (materialises that one member only)."""
        h, sign = i % self.pairs, (-1.0 if self.antithetic and i >= self.pairs else 1.0)
        flat = self.center.clone()
        for k, (offset, rows, cols) in enumerate(self.slots):
            e = self.a[k][h] @ self.b[k][h].T
            flat[offset : offset + rows * cols] += (sign * self.sigma / math.sqrt(self.ranks[k])) * e.reshape(
                -1
            )
        flat[self.vector_index] += sign * self.sigma * self.vector_noise[h]
        return flat

    def materialize(self) -> torch.Tensor:
        """All members as ``[P, D]``: memory P x D, for small networks and tests."""
        return torch.stack([self.member(i) for i in range(self.size)])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.member(i)

    def to(self, device: torch.device | str) -> LowRankPopulation:
        return LowRankPopulation(
            self.center.to(device),
            self.sigma,
            self.slots,
            self.ranks,
            [t.to(device) for t in self.a],
            [t.to(device) for t in self.b],
            self.vector_index.to(device),
            self.vector_noise.to(device),
            self.size,
            self.antithetic,
            self.seed,
            self.generation,
        )


def _activation_groups(act: str | list[str], device: torch.device) -> list:
    if isinstance(act, str):
        return [(get_activation(act), None)]
    kinds = sorted(set(act))
    return [
        (get_activation(k), torch.tensor([i for i, n in enumerate(act) if n == k], device=device))
        for k in kinds
    ]


class EggrollMLP:
    """A ``PopulationMLP`` that also runs ``LowRankPopulation``s in low-rank form."""

    def __init__(self, mlp: PopulationMLP):
        self.mlp = mlp
        self.num_params = mlp.num_params
        self.in_features = mlp.in_features
        self.out_features = mlp.out_features
        self.layer_sizes = mlp.layer_sizes
        slots, bias_ranges, offset = [], [], 0
        for fan_in, fan_out in zip(mlp.layer_sizes[:-1], mlp.layer_sizes[1:], strict=True):
            slots.append((offset, fan_in, fan_out))
            offset += fan_in * fan_out
            bias_ranges.append((offset, offset + fan_out) if mlp.bias else None)
            offset += fan_out if mlp.bias else 0
        self._slots = slots
        self._bias_ranges = bias_ranges
        self._groups = [_activation_groups(a, mlp.device) for a in mlp.activations]

    def lowrank_slots(self) -> list[Slot]:
        """The weight matrices ``W_l (in x out)`` as (offset, rows, cols)."""
        return list(self._slots)

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        return self.mlp.init_params(generator)

    def forward(self, population: Any, x: torch.Tensor) -> torch.Tensor:
        """``[P, B, out]`` for a ``LowRankPopulation`` or a plain ``[P, D]``/``[D]`` tensor."""
        if not isinstance(population, LowRankPopulation):
            return self.mlp.forward(population, x)
        pop, center = len(population), population.center
        if x.dim() not in (2, 3) or x.shape[-1] != self.in_features or (x.dim() == 3 and x.shape[0] != pop):
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected [{pop}, B, {self.in_features}] or [B, in]"
            )
        x = x.to(center.dtype)
        h = x
        for layer, (offset, fan_in, fan_out) in enumerate(self._slots):
            w = center[offset : offset + fan_in * fan_out].view(fan_in, fan_out)
            bias, right = self._bias_and_right_factor(population, layer)
            a = population.scaled_a(layer)
            if h.dim() == 2:  # inputs shared by all members: one GEMM each for x W and x A
                base = (h @ w if bias is None else torch.addmm(bias, h, w)).unsqueeze(0).expand(pop, -1, -1)
                r = a.shape[-1]
                xa = (
                    (h @ a.permute(1, 0, 2).reshape(fan_in, pop * r)).view(h.shape[0], pop, r).transpose(0, 1)
                )
                out = torch.baddbmm(base, self._with_ones(xa, bias), right)
            else:  # one GEMM of all P x B rows with the shared centre W, then the rank-r terms in place
                batch = h.shape[1]
                flat = h.reshape(pop * batch, fan_in)
                out = (flat @ w if bias is None else torch.addmm(bias, flat, w)).view(pop, batch, fan_out)
                out.baddbmm_(self._with_ones(torch.bmm(h, a), bias), right)
            act = self.mlp.activations[layer]
            inplace = _INPLACE.get(act) if isinstance(act, str) else None
            h = inplace(out) if inplace else apply_mixed(out, self._groups[layer])
        return h

    __call__ = forward

    def _bias_and_right_factor(
        self, population: LowRankPopulation, layer: int
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The centre bias ``[out]`` and ``[P, r (+1), out]``: ``B_i^T`` with the bias noise as a last row.

        Folding member i's bias perturbation into the rank-r product (against a column of
        ones in ``x A_i``) makes the whole perturbation one batched matmul per layer.
        """
        key = ("mlp-right", layer)
        if key not in population._cache:
            right = population.b_factors(layer).transpose(1, 2)
            if self._bias_ranges[layer] is not None:
                start, end = self._bias_ranges[layer]
                cols = torch.searchsorted(
                    population.vector_index, population.vector_index.new_tensor([start, end])
                )
                noise = population.vector_perturbation()[:, int(cols[0]) : int(cols[1])]
                right = torch.cat([right, noise.unsqueeze(1)], dim=1)
            population._cache[key] = right
        if self._bias_ranges[layer] is None:
            return None, population._cache[key]
        start, end = self._bias_ranges[layer]
        return population.center[start:end], population._cache[key]

    @staticmethod
    def _with_ones(xa: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if bias is None:
            return xa
        return torch.cat([xa, torch.ones(*xa.shape[:-1], 1, dtype=xa.dtype, device=xa.device)], dim=-1)

    def to_module(self, params: torch.Tensor) -> nn.Module:
        return self.mlp.to_module(params)

    def named_tensors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.mlp.named_tensors(params)

    def spec(self) -> dict[str, Any]:
        """The wrapped MLP's spec: a saved member loads as a plain ``mlp``."""
        return self.mlp.spec()

    def flops_per_sample(self) -> int:
        return self.mlp.flops_per_sample()


def build_eggroll_mlp(
    params: MLPParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    **kw: Any,
) -> EggrollMLP:
    """``[network] type = "eggroll_mlp"``: an ``mlp`` that EGGROLL populations can run."""
    return EggrollMLP(build_mlp(params, in_features, out_features, default_output_activation, **kw))


register_network(
    "eggroll_mlp",
    MLPParams,
    build_eggroll_mlp,
    from_spec=None,  # a saved member is a plain mlp: its spec says type = "mlp"
    runs=(PopulationKind.FLAT, PopulationKind.LOWRANK),
    description="an mlp that also runs EGGROLL's low-rank populations",
    config_of=lambda net: mlp_config(net.mlp) if type(net) is EggrollMLP else None,
)


class _LowRankLinear(nn.Module):
    """``nn.Linear`` plus ``(x B) A^T`` with per-call factors ``lowrank_a``/``lowrank_b`` (buffers)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.register_buffer("lowrank_a", torch.zeros(linear.out_features, 1), persistent=False)
        self.register_buffer("lowrank_b", torch.zeros(linear.in_features, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + (x @ self.lowrank_b) @ self.lowrank_a.T


class EggrollModule:
    """A ``ModuleAdapter`` whose ``nn.Linear`` weights take low-rank noise; other parameters full-rank.

    Accepts ``LowRankPopulation``s and plain ``[P, D]`` tensors (those go to the adapter).
    """

    def __init__(self, adapter: ModuleAdapter | nn.Module, in_features: int = 0, out_features: int = 0):
        if isinstance(adapter, nn.Module):
            adapter = ModuleAdapter(adapter, in_features, out_features)
        self.adapter = adapter
        self.num_params = adapter.num_params
        self.in_features, self.out_features = adapter.in_features, adapter.out_features
        if isinstance(adapter.module, nn.Linear):
            raise ValueError("wrap a module that contains nn.Linear layers, not a bare nn.Linear")
        self.wrapped = copy.deepcopy(adapter.module)
        linears = [
            name
            for name, m in self.wrapped.named_modules()
            if type(m) is nn.Linear and name  # noqa: E721
        ]
        for name in linears:
            parent_name, _, child = name.rpartition(".")
            parent = self.wrapped.get_submodule(parent_name) if parent_name else self.wrapped
            setattr(parent, child, _LowRankLinear(getattr(parent, child)))
        offsets = [0]
        for n in adapter.numels:
            offsets.append(offsets[-1] + n)
        self._offsets = dict(zip(adapter.names, offsets[:-1], strict=True))
        self.linear_layers = linears
        self._slots = []
        self._slot_names = []
        for name in linears:
            wname = f"{name}.weight"
            rows, cols = adapter.shapes[adapter.names.index(wname)]
            self._slots.append((self._offsets[wname], rows, cols))
            self._slot_names.append(wname)

    def lowrank_slots(self) -> list[Slot]:
        """The ``nn.Linear`` weights (out x in) as (offset, rows, cols)."""
        return list(self._slots)

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        return self.adapter.init_params(generator)

    def forward(self, population: Any, x: torch.Tensor, per_member: bool | None = None) -> torch.Tensor:
        """``[P, B, ...]`` for a ``LowRankPopulation`` or a plain tensor population."""
        if not isinstance(population, LowRankPopulation):
            return self.adapter.forward(population, x, per_member)
        pop, center = len(population), population.center
        if per_member is None:
            per_member = x.dim() >= 3 and x.shape[0] == pop
        values = population.vector_values()
        params: dict[str, torch.Tensor] = {}
        dims: dict[str, int | None] = {}
        col = 0
        slot_of = {name: k for k, name in enumerate(self._slot_names)}
        for name, shape, numel in zip(
            self.adapter.names, self.adapter.shapes, self.adapter.numels, strict=True
        ):
            offset = self._offsets[name]
            if name in slot_of:
                params[name] = center[offset : offset + numel].view(shape)
                dims[name] = None
                k = slot_of[name]
                prefix = name[: -len("weight")]
                params[prefix + "lowrank_a"] = population.scaled_a(k)
                params[prefix + "lowrank_b"] = population.b_factors(k)
                dims[prefix + "lowrank_a"] = dims[prefix + "lowrank_b"] = 0
            else:
                params[name] = values[:, col : col + numel].reshape(pop, *shape)
                dims[name] = 0
                col += numel
        for name, buf in self.adapter.buffers.items():
            params[name], dims[name] = buf, None

        def run(p: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.wrapped, (p,), (inputs,))

        return vmap(run, in_dims=(dims, 0 if per_member else None), randomness="different")(params, x)

    __call__ = forward

    def to_module(self, params: torch.Tensor) -> nn.Module:
        return self.adapter.to_module(params)

    def named_tensors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.adapter.named_tensors(params)

    def spec(self) -> dict[str, Any]:
        return self.adapter.spec()
