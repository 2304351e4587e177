"""The NEAT phenotype: runs a whole population of genomes in one batched call.

``NEATPhenotype.forward(population, x)`` compiles the population once (``compile.py``; kept
in a cache owned by this phenotype and dropped with the population) and runs it
(``run.py``); ``chunk_size`` bounds memory by compiling and running that many genomes at a
time. Stateful recurrent genomes keep their node values for the current rollout of a
population (``reset_state(population)`` starts a new one: the ``Recurrent`` hook of
``neuroevo.core.contracts``). ``NEATModule`` is one genome as a plain ``torch.nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

import torch

from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import ACTIVATIONS
from neuroevo.nn.neat.compile import SLOT_TENSORS, CompiledNEAT, compile_population, sort_by_depth
from neuroevo.nn.neat.flat import FlatNEAT, compile_flat, flat_applicable, run_flat
from neuroevo.nn.neat.genes import CONN_FIELDS, NODE_FIELDS
from neuroevo.nn.neat.genome import genome_from_json, genome_to_json
from neuroevo.nn.neat.population import NEATPopulation, as_population
from neuroevo.nn.neat.run import run_compiled


@dataclass
class CompiledChunks:
    """One population compiled for a device and dtype: its chunks and the row order they hold
    (``order``: compiled row i is genome ``order[i]``; None = as is)."""

    device: torch.device
    dtype: torch.dtype
    chunks: list[CompiledNEAT | FlatNEAT]
    order: torch.Tensor | None
    inverse: torch.Tensor | None
    depth_sorted: bool = False


@dataclass
class RolloutState:
    """Recurrent node values ``[P, B, slots]`` of a population's current rollout, per chunk."""

    values: dict[int, torch.Tensor] = field(default_factory=dict)


class NEATModule(torch.nn.Module):
    """One NEAT genome as a plain ``torch.nn.Module``: ``forward(x[B, in]) -> [B, out]``.

    The compiled slot tensors are buffers (so ``.to(device)`` and ``state_dict()`` work);
    feed-forward genomes are evaluated level by level, recurrent ones run ``steps`` updates
    per call and keep their node values between calls (``reset()`` clears them).
    """

    def __init__(self, genome: dict[str, Any], steps: int = 1):
        super().__init__()
        self.genome_json = genome_to_json(genome)
        self.steps = int(steps)
        compiled = compile_population(NEATPopulation.from_genomes([genome]))
        self._meta = compiled
        for name in SLOT_TENSORS:
            value = getattr(compiled, name)
            if value is not None:
                self.register_buffer(name, value.clone())
        self._state: torch.Tensor | None = None

    def reset(self) -> None:
        self._state = None

    def compiled(self) -> CompiledNEAT:
        """The slot tensors as a ``CompiledNEAT`` on this module's device."""
        values = {name: getattr(self, name, None) for name in SLOT_TENSORS}
        m = self._meta
        return CompiledNEAT(
            m.num_inputs,
            m.num_outputs,
            m.num_slots,
            act_fns=m.act_fns,
            agg_kinds=m.agg_kinds,
            num_levels=m.num_levels,
            row_start=m.row_start,
            act_inplace=m.act_inplace,
            **values,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 1
        xb = x.reshape(1, -1, x.shape[-1]).to(self.weight.dtype)
        c = self.compiled()
        state = self._state if self._state is not None and self._state.shape[1] == xb.shape[1] else None
        out, values = run_compiled(c, xb, steps=self.steps, state=state, flat_reads=False)
        if c.level is None:
            self._state = values.detach()
        out = out[0]
        return out[0] if single else out

    def extra_repr(self) -> str:
        g = self.genome_json
        return (
            f"nodes={len(g['nodes'])}, connections={len(g['connections'])}, feed_forward={g['feed_forward']}"
        )


class NEATPhenotype:
    """Runs a NEAT population: ``forward(population, x[P, B, in] | x[B, in]) -> [P, B, out]``.

    ``population`` is what ``NEAT.ask()`` returns (a :class:`NEATPopulation`), or one genome
    (dict or JSON), or a list of genomes. ``recurrent_steps``: updates per call for recurrent
    genomes; with ``stateful`` their node values persist between calls on the same population
    (for control tasks; ``reset_state(population)`` clears them), otherwise every call starts
    from zeros. ``chunk_size`` (0 = all) bounds memory: genomes are compiled and run in chunks;
    populations of at least ``2 * group_min`` genomes are also grouped by size (at most 8
    groups), each padded only to its own largest genome. Feed-forward populations with sum
    aggregation, response 1 and one activation run as one flat graph instead (``flat.py``).
    ``output_activation`` (None = evolved like any node) fixes the output nodes' activation.
    """

    num_params = 0

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        *,
        recurrent_steps: int = 1,
        stateful: bool = False,
        chunk_size: int = 0,
        output_activation: str | None = None,
        group_min: int = 1250,
    ):
        if num_inputs < 1 or num_outputs < 1:
            raise ConfigError("network.type = 'neat' needs a task with inputs and outputs")
        self.in_features = int(num_inputs)
        self.out_features = int(num_outputs)
        self.recurrent_steps = int(recurrent_steps)
        self.stateful = bool(stateful)
        self.chunk_size = int(chunk_size)
        self.group_min = int(group_min)
        self.output_activation = (
            None if output_activation is None else ACTIVATIONS.canonical(output_activation)
        )
        self._caches()

    def _caches(self) -> None:
        """Per-population caches, dropped with their population (populations hash by identity)."""
        self._compiled: WeakKeyDictionary[NEATPopulation, CompiledChunks] = WeakKeyDictionary()
        self._rollouts: WeakKeyDictionary[NEATPopulation, RolloutState] = WeakKeyDictionary()
        self._last: tuple[Any, NEATPopulation] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a worker process) without the caches."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_compiled", "_rollouts", "_last")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._caches()

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """NEAT draws its own initial genomes; there is no flat parameter vector."""
        return torch.zeros(0)

    def compiled(self, population: Any) -> CompiledChunks | None:
        """What this phenotype compiled for ``population`` (None before its first ``forward``)."""
        return self._compiled.get(self._population(population))

    def _chunks(self, pop: NEATPopulation, device: torch.device, dtype: torch.dtype) -> CompiledChunks:
        """The population compiled once (kept while it lives), its rows sorted by depth on the
        second run (an episode's next step: worth it for a population run many times).

        Large populations are ordered by genome size first, so each chunk is trimmed to the
        widths of similar genomes instead of the largest one.
        """
        entry = self._compiled.get(pop)
        if entry is None or entry.device != device or entry.dtype != dtype:
            entry = self._compile(pop, device, dtype)
            self._compiled[pop] = entry
        elif not entry.depth_sorted:
            entry.chunks = [c if isinstance(c, FlatNEAT) else sort_by_depth(c) for c in entry.chunks]
            entry.depth_sorted = True
        return entry

    def _compile(self, pop: NEATPopulation, device: torch.device, dtype: torch.dtype) -> CompiledChunks:
        size = len(pop)
        step = self.chunk_size if self.chunk_size > 0 else max(size, 1)
        if flat_applicable(pop):  # no padding to trim: chunks only bound memory
            if step >= size:  # one chunk: the population itself
                return CompiledChunks(device, dtype, [compile_flat(pop, device, dtype)], None, None)
            chunks = [
                compile_flat(pop[start : start + step], device, dtype) for start in range(0, size, step)
            ]
            return CompiledChunks(device, dtype, chunks or [compile_flat(pop, device, dtype)], None, None)
        order = None
        nodes, conns = pop.gene_counts()
        if size >= 2 * self.group_min:
            step = min(step, -(-size // min(8, size // self.group_min)))
            order = torch.argsort(nodes + conns, stable=True)
        chunks = []
        for start in range(0, size, step):
            rows = slice(start, start + step) if order is None else order[start : start + step]
            width_n = max(int(nodes[rows].max()), pop.num_outputs) if size else pop.num_outputs
            width_c = int(conns[rows].max()) if size else 0
            # selected and trimmed in one copy; compilation never reads innovation numbers
            part = pop.select(rows, width_n, width_c, skip=("conn_innovation",))
            chunks.append(compile_population(part, device, dtype, depth_sorted=False))
        inverse = None if order is None else torch.argsort(order).to(device)
        return CompiledChunks(device, dtype, chunks, None if order is None else order.to(device), inverse)

    def _population(self, population: Any) -> NEATPopulation:
        """``population`` as a NEATPopulation; genome lists are converted once per object (the
        control task calls ``forward`` every step with the same list, and the compiled form and
        rollout state are keyed on the converted population)."""
        if isinstance(population, NEATPopulation):
            return population
        last = self._last
        if last is not None and last[0] is population:
            return last[1]
        pop = as_population(population)
        self._last = (population, pop)
        return pop

    def forward(self, population: Any, x: torch.Tensor) -> torch.Tensor:
        pop = self._population(population)
        if pop.num_inputs != self.in_features or pop.num_outputs != self.out_features:
            raise ValueError(
                f"genomes have {pop.num_inputs} inputs / {pop.num_outputs} outputs; "
                f"this phenotype expects {self.in_features} / {self.out_features}"
            )
        if not torch.is_floating_point(x):
            x = x.float()
        size = len(pop)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(size, -1, -1)
        if x.dim() != 3 or x.shape[0] != size or x.shape[2] != self.in_features:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected [P={size}, B, {self.in_features}] or [B, in]"
            )
        compiled = self._chunks(pop, x.device, x.dtype)
        if compiled.order is not None:
            x = x.index_select(0, compiled.order)
        states = self._rollouts.setdefault(pop, RolloutState()).values if self.stateful else {}
        outs = []
        start = 0
        for i, c in enumerate(compiled.chunks):
            rows = c.size if isinstance(c, FlatNEAT) else c.src.shape[0]
            xc = x[start : start + rows]
            if isinstance(c, FlatNEAT):
                outs.append(run_flat(c, xc))
                start += rows
                continue
            state = states.get(i)
            if state is not None and state.shape[1] != xc.shape[1]:
                state = None
            out, values = run_compiled(c, xc, steps=self.recurrent_steps, state=state)
            if self.stateful and c.level is None:
                states[i] = values
            outs.append(out)
            start += rows
        out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        return out if compiled.inverse is None else out.index_select(0, compiled.inverse)

    __call__ = forward

    def reset_state(self, population: Any) -> None:
        """Start a new rollout of ``population``: forget the recurrent node values kept for it."""
        self._rollouts.pop(self._population(population), None)

    def to_module(self, genome: Any) -> NEATModule:
        """One genome as a plain ``torch.nn.Module``."""
        return NEATModule(_one_genome(genome), steps=self.recurrent_steps)

    def named_tensors(self, genome: Any) -> dict[str, torch.Tensor]:
        """The genome's gene tensors (for safetensors); names are in ``member_spec``."""
        g = _one_genome(genome)
        return {k: g[k].detach().contiguous() for k in NODE_FIELDS + CONN_FIELDS}

    def member_spec(self, genome: Any) -> dict[str, Any]:
        """The genome as JSON (round-trips through ``member_from_spec``)."""
        return genome_to_json(_one_genome(genome))

    def member_from_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The genome dict back from ``member_spec`` JSON."""
        return genome_from_json(spec)

    def spec(self) -> dict[str, Any]:
        return {
            "type": "neat",
            "num_inputs": self.in_features,
            "num_outputs": self.out_features,
            "recurrent_steps": self.recurrent_steps,
            "stateful": self.stateful,
            "chunk_size": self.chunk_size,
            "output_activation": self.output_activation,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> NEATPhenotype:
        return cls(
            spec["num_inputs"],
            spec["num_outputs"],
            recurrent_steps=spec.get("recurrent_steps", 1),
            stateful=spec.get("stateful", False),
            chunk_size=spec.get("chunk_size", 0),
            output_activation=spec.get("output_activation"),
        )


def _one_genome(genome: Any) -> dict[str, Any]:
    if isinstance(genome, NEATPopulation):
        if len(genome) != 1:
            raise ValueError(f"expected one genome, got a population of {len(genome)}")
        return genome.genome(0)
    if isinstance(genome, dict):
        return genome_from_json(genome) if "nodes" in genome else genome
    raise TypeError(f"expected a NEAT genome dict or JSON, not {type(genome).__name__}")


__all__ = ["CompiledChunks", "NEATModule", "NEATPhenotype", "RolloutState"]
