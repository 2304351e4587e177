"""Fused rollouts: a block of K steps of (observe, normalise, MLP forward, action map, env step).

The plain rollout (``ControlTask.rollout`` with any phenotype) runs some 60 small eager kernels
per step and syncs with the host twice per step. For the common case, a ``PopulationMLP`` with
one activation per layer, deterministic actions and a ``[P, D]`` tensor population, the rollout
instead runs ``block``: ``BLOCK_STEPS`` steps written as one pure tensor function with no host
sync inside, so finished episodes are only checked (``active.any()``) once per block. Steps of
finished rows are masked, as in the plain path (stepping past the limit is harmless: every row
is truncated at ``max_steps``).

Two ways to run the block:

- eager: the same operations as the plain path (``baddbmm`` forward, the env's own dynamics),
  so the results are bit-identical to it; finished members are dropped at block boundaries
  (compaction), as in the plain path;
- compiled: an AOTInductor package of the block (``torch.export`` + inductor: one C++ loop nest
  per step on the CPU), cached on disk; where it cannot be built, ``torch.compile`` through
  ``neuroevo.core.compile.maybe_compile``, then eager, with one warning line. The
  forward is written as broadcast multiply-and-sum so that inductor fuses it with the env step
  instead of calling an external matmul; results agree with eager to float rounding. The batch
  keeps its shape (no compaction: a new shape would compile again).

Compiling costs seconds (cold: ~10 s or more per shape, with inductor's import; inductor's
on-disk cache makes later processes pay less), so ``ControlParams.compile`` is false (eager) by
default; ``"auto"`` compiles only rollouts of at least ``COMPILE_MIN_ROWS`` env rows (``P x E``),
where the per-step saving pays for it within a few generations; ``true`` always compiles.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import importlib
import inspect
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from neuroevo.core.compile import maybe_compile
from neuroevo.nn.activations import get_activation
from neuroevo.tasks.control.base import BatchedEnv

#: steps per eager fused block, unless the env sets ``block_steps``; ``active.any()`` (the only
#: host sync) runs once per block.
BLOCK_STEPS = 10
#: steps per compiled block: the block is unrolled, so each step costs compile time (CartPole,
#: cold: ~10 s at 2 steps, ~16 s at 10), while a call of a compiled block costs microseconds
COMPILED_BLOCK_STEPS = 2


def block_steps(env: BatchedEnv, *, compiled: bool = False) -> int:
    """Steps per fused block for ``env`` (Acrobot's RK4 step is large: fewer per block)."""
    return int(env.block_steps or (COMPILED_BLOCK_STEPS if compiled else BLOCK_STEPS))


#: ``compile = "auto"`` compiles a rollout of at least this many env rows (P x E)
COMPILE_MIN_ROWS = 1024

Carry = tuple[torch.Tensor, ...]
LOGGER = logging.getLogger("neuroevo.compile")
_BLOCKS: dict[tuple, Callable[..., Carry]] = {}


def fusable(phenotype: Any, population: Any, *, deterministic: bool) -> bool:
    """Whether the fused path applies: a biased ``PopulationMLP`` with one activation per layer,
    a ``[P, D]`` tensor population and deterministic actions (sampled actions draw CPU noise per
    step from a generator, which the plain path does)."""
    from neuroevo.nn.mlp import PopulationMLP

    return (
        type(phenotype) is PopulationMLP
        and phenotype.bias
        and all(isinstance(a, str) for a in phenotype.activations)
        and isinstance(population, torch.Tensor)
        and population.dim() == 2
        and deterministic
    )


def block_weights(phenotype: Any, population: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(W_0, b_0, W_1, b_1, ...)`` of an MLP population as a block takes them: views of
    ``population``, each bias ``[P, 1, out]`` so that no step has to unsqueeze it."""
    return tuple(t for w, b in phenotype.layer_views(population) for t in (w, b.unsqueeze(1)))


def make_block(
    env: BatchedEnv,
    activations: Sequence[str],
    *,
    normalize: bool,
    steps: int | None = None,
    broadcast_matmul: bool = False,
    traced: bool = True,
) -> Callable[..., Carry]:
    """A pure function running ``steps`` masked steps of ``env``'s dynamics under an MLP policy.

    ``block(weights, mean, inv_std, low, high, state, elapsed, active, returns, lengths, obs_sum,
    obs_sumsq)`` returns the new ``(state, elapsed, active, returns, lengths, obs_sum,
    obs_sumsq)``. ``weights`` is ``(W_0, b_0, W_1, b_1, ...)`` with ``W_l[P, in, out]``
    and ``b_l[P, 1, out]`` (``block_weights``); ``state[N, S]`` with ``N = P * E`` (row
    ``p * E + e``); ``returns[N]``
    float64, ``lengths[N]`` and ``elapsed[N]`` long, ``active[N]`` bool; the observation sums
    are per member, float64, and only accumulated when ``normalize`` (the observation count
    of a member is the sum of its episode lengths). ``mean``, ``inv_std``,
    ``low``, ``high`` are in the env dtype (``low``/``high`` unused for discrete actions).
    ``traced`` runs the env's ``_dynamics(traced=True)``, without host syncs (compiled blocks,
    and eager on a GPU); eager on the CPU, where a sync costs an op, takes the exact untraced
    dynamics of the plain path (Acrobot: a wrap loop that usually runs no round, against a fixed
    four).
    """
    steps = block_steps(env) if steps is None else int(steps)
    acts = [get_activation(a) for a in activations]
    num_actions = env.num_actions
    max_steps = env.max_steps
    f64 = torch.float64

    def forward(weights: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer, act in enumerate(acts):
            w, b = weights[2 * layer], weights[2 * layer + 1]
            if broadcast_matmul:  # fusable with the elementwise work around it
                z = (h.unsqueeze(-1) * w.unsqueeze(1)).sum(-2) + b
            else:  # the plain path's operation: bit-identical to PopulationMLP.forward
                z = torch.baddbmm(b, h, w)
            h = act(z)
        return h

    def block(
        weights: Sequence[torch.Tensor],
        mean: torch.Tensor,
        inv_std: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        state: torch.Tensor,
        elapsed: torch.Tensor,
        active: torch.Tensor,
        returns: torch.Tensor,
        lengths: torch.Tensor,
        obs_sum: torch.Tensor,
        obs_sumsq: torch.Tensor,
    ) -> Carry:
        members = weights[0].shape[0]
        rows = state.shape[0]
        episodes = rows // members
        for _ in range(steps):
            obs = env._observe(state)
            mask = active.unsqueeze(1)
            if normalize:  # per-member sums, in the plain path's order (count: from lengths, after)
                obs64 = obs.to(f64) * mask
                sq = obs64 * obs64
                if episodes > 1:  # a sum over one episode is the row itself
                    obs64, sq = (
                        obs64.view(members, episodes, -1).sum(1),
                        sq.view(members, episodes, -1).sum(1),
                    )
                obs_sum = obs_sum + obs64
                obs_sumsq = obs_sumsq + sq
                obs = (obs - mean) * inv_std
            out = forward(weights, obs.view(members, episodes, -1).to(weights[0].dtype))
            out = out.reshape(rows, -1)
            if num_actions > 0:
                actions = (out if out.shape[1] == num_actions else out[:, :num_actions]).argmax(-1)
            else:
                lo, hi = low.to(out.dtype), high.to(out.dtype)  # as map_actions: in the network's dtype
                actions = (lo + (torch.tanh(out) + 1.0) * 0.5 * (hi - lo)).to(state.dtype)
            new_state, reward, terminated = env._dynamics(state, actions, elapsed, traced=traced)
            state = torch.where(mask, new_state, state)
            returns = returns + (reward * active).to(f64)
            lengths = lengths + active  # bool adds as 0/1
            elapsed = elapsed + active
            active = active & ~terminated & (elapsed < max_steps)
        return state, elapsed, active, returns, lengths, obs_sum, obs_sumsq

    return block


class AotBlock:
    """The block compiled ahead of time by AOTInductor, one package per argument layout, cached on disk.

    ``torch.compile`` re-traces the function in every process (seconds, before inductor's cache
    helps) and adds a guard check and a Python wrapper to every call; an AOTInductor package
    (``torch.export`` + ``aoti_compile_and_package``) is compiled once per machine, loaded in
    milliseconds by later processes and called straight into C++. Packages live in
    ``$NEUROEVO_AOT_DIR`` (default ``<inductor cache dir>/neuroevo_aot``), keyed by torch version,
    the source of the env and of this module, the env settings, the network's activations, the
    thread count and every argument's shape, stride and dtype. If export or compilation fails
    the block goes through ``maybe_compile`` (``torch.compile``, eager fallback, one warning).
    """

    def __init__(self, env: BatchedEnv, activations: Sequence[str], *, normalize: bool):
        self.env, self.activations, self.normalize = env, tuple(activations), normalize
        steps = block_steps(env, compiled=True)
        self.block = make_block(env, activations, normalize=normalize, steps=steps, broadcast_matmul=True)
        self.loaders: dict[tuple, Any] = {}
        self.fallback: Callable[..., Carry] | None = None

    def __call__(self, weights: Sequence[torch.Tensor], *rest: torch.Tensor) -> Carry:
        if self.fallback is not None:
            return self.fallback(weights, *rest)
        flat = [*weights, *rest]
        layout = tuple((tuple(t.shape), t.stride(), t.dtype) for t in flat)
        loader = self.loaders.get(layout)
        if loader is None:
            try:
                loader = self.loaders[layout] = self._load(len(weights), flat, layout)
            except Exception as error:  # export/compile failures have no common base class
                LOGGER.info("AOTInductor unavailable for %s (%s); using torch.compile", self.env.id, error)
                self.fallback = maybe_compile(
                    self.block,
                    name=f"{self.env.id} fused rollout",
                    device=str(self.env.device),
                    dynamic=False,
                )
                return self.fallback(weights, *rest)
        return tuple(loader.boxed_run(flat))

    def _load(self, num_weights: int, flat: list[torch.Tensor], layout: tuple) -> Any:
        path = _package_path(self.env, self.activations, self.normalize, layout)
        if not path.exists():
            inductor = importlib.import_module("torch._inductor")  # only when a package is missing
            block = self.block

            class Block(torch.nn.Module):
                def forward(self, *args: torch.Tensor) -> Carry:
                    return block(args[:num_weights], *args[num_weights:])

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.pt2")
            # ``vec_isa_ok``: take the vector ISA from the CPU's flags (which inductor reads) without
            # inductor's test build of every ISA (~7 s on a cold cache); a compiler that cannot build
            # for it fails here, and the block falls back to ``torch.compile``, which runs the tests.
            # ``realize_cpu_opcount_threshold``: store an intermediate once it takes 20 ops (default
            # 50), so that a deep chain (Acrobot's four RK4 stages) is not inlined into its every
            # use: Acrobot compiles in ~18 s instead of ~150 s, at ~7% of its speed
            options = {"cpp.vec_isa_ok": True, "realize_cpu_opcount_threshold": 20}
            with warnings.catch_warnings(), inductor.config.patch(options):
                warnings.simplefilter("ignore", FutureWarning)  # torch-internal notices, not the user's
                program = torch.export.export(Block(), tuple(flat))
                inductor.aoti_compile_and_package(program, package_path=str(tmp))
            os.replace(tmp, path)  # atomic: a concurrent process sees a whole package or none
        return torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "user"


@functools.cache
def _source_digest(env_class: type) -> str:
    """Hash of the code a package is compiled from: the env's module, this one, the base, activations."""
    digest = hashlib.sha256()
    for obj in (env_class, BatchedEnv, get_activation, make_block):
        digest.update(Path(str(inspect.getsourcefile(obj))).read_bytes())
    return digest.hexdigest()


def _package_path(env: BatchedEnv, activations: tuple, normalize: bool, layout: tuple) -> Path:
    root = os.environ.get("NEUROEVO_AOT_DIR") or os.path.join(
        os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), f"torchinductor_{_user()}"),
        "neuroevo_aot",
    )
    digest = hashlib.sha256(_source_digest(type(env)).encode())
    settings = (torch.__version__, type(env).__qualname__, env.max_steps, str(env.dtype), str(env.device))
    steps = block_steps(env, compiled=True)
    digest.update(repr((settings, activations, normalize, steps, torch.get_num_threads(), layout)).encode())
    return Path(root) / f"{env.id}-{digest.hexdigest()[:24]}.pt2"


def fused_block(
    env: BatchedEnv, activations: Sequence[str], *, normalize: bool, compiled: bool
) -> Callable[..., Carry]:
    """``make_block`` for this env and network: eager, or compiled (``AotBlock`` on the CPU,
    ``maybe_compile`` elsewhere).

    Built once per process for each (env class, step limit, dtype, device, activations,
    normalisation, compiled), so every task (and seed) with the same setting shares one compiled
    function and pays the compile once.
    """
    key = (type(env), env.max_steps, env.dtype, env.device, tuple(activations), normalize, compiled)
    if key not in _BLOCKS:
        if not compiled:
            block = make_block(env, activations, normalize=normalize, traced=env.device.type != "cpu")
        elif env.device.type == "cpu":
            block = AotBlock(env, activations, normalize=normalize)
        else:
            block = make_block(
                env,
                activations,
                normalize=normalize,
                steps=block_steps(env, compiled=True),
                broadcast_matmul=True,
            )
            block = maybe_compile(
                block, name=f"{env.id} fused rollout", device=str(env.device), dynamic=False
            )
        _BLOCKS[key] = block
    return _BLOCKS[key]
