"""PBT's sequential mode: any models, one member at a time, each step a function of its inputs.

For members that cannot be stacked (different module classes, non-tensor state, an RL learner
with its own environment), ``PBTSequential`` trains a list of members one after another. A
member is whatever ``init(member, generator)`` returns: a dict of objects with
``state_dict``/``load_state_dict`` (``nn.Module``, ``torch.optim.Optimizer``, ...). One training
step is

    step(member_state, hyperparams, data) -> loss | None

a function of the member's state, its hyperparameters (name -> float or categorical choice)
and ``data`` = ``data(generation, step, member)`` (default: a ``torch.Generator`` keyed
(seed, generation * steps + step, member, "pbt_step"), the only randomness the step should
use, so a resumed run repeats it). That is the shape a distributed executor needs: a member's
step reads nothing else. ``evaluate(member_state) -> float`` gives the fitness.

A member whose ``step`` or ``evaluate`` raises stops the run (``member_errors = "raise"``,
default) or fails alone (``"nan"``): its fitness is NaN, which the strategy's ``on_nan``
policy makes the worst, so it copies a good member at this ready point; it is put back to
its last saved state, and ``failed_members`` is counted in the metrics. The other members
are not held up.

Exploit and saved states work as in the stacked task: at the end of each ready interval every
member's state dicts are snapshotted (deep copies; that snapshot is the task's ``state_dict``
and so the checkpoint); a member exploited at the next ask loads its parent's snapshot. The
Python loop over members is the point of this mode; use ``pbt_supervised`` (stacked,
``torch.func``) when the members share an architecture.

One ready interval is three pieces, so the members can train elsewhere (``RayExecutor``): the
driver's ``begin_interval`` applies the exploit copies to the saved snapshots and step counts
and returns one ``MemberJob`` per member (hyperparameters, steps, the member's step count);
``MemberProgram.run`` (init, step, evaluate and data, no member state; picklable) trains one
member through its job wherever the member lives and returns a ``MemberOutcome`` (fitness,
steps taken, the new snapshot); ``end_interval`` stores the snapshots and returns the Fitness.
The local ``evaluate`` is the three in a row, so both give the same bits.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness
from neuroevo.tasks.base import Task

MemberState = dict[str, Any]


def set_optimizer_hyperparams(optimizer: torch.optim.Optimizer, hyperparams: dict[str, Any]) -> None:
    """Write ``lr``, ``momentum``, ``weight_decay``, ``eps``, ``beta1``/``beta2`` into every param group."""
    for group in optimizer.param_groups:
        for key in ("lr", "momentum", "weight_decay", "eps", "dampening"):
            if key in hyperparams and key in group:
                group[key] = float(hyperparams[key])
        if "betas" in group and ("beta1" in hyperparams or "beta2" in hyperparams):
            b1, b2 = group["betas"]
            group["betas"] = (float(hyperparams.get("beta1", b1)), float(hyperparams.get("beta2", b2)))


def _snapshot(state: MemberState) -> dict[str, Any]:
    return {
        name: copy.deepcopy(obj.state_dict()) for name, obj in state.items() if hasattr(obj, "state_dict")
    }


def _restore(state: MemberState, saved: dict[str, Any]) -> None:
    for name, tree in saved.items():
        obj = state[name]
        tree = copy.deepcopy(tree)
        if isinstance(obj, torch.optim.Optimizer):  # checkpoints store JSON: int keys came back as str
            tree["state"] = {int(k): v for k, v in tree["state"].items()}
            for group in tree["param_groups"]:
                if isinstance(group.get("betas"), list):
                    group["betas"] = tuple(group["betas"])
        obj.load_state_dict(tree)


@dataclass
class MemberJob:
    """What one member trains in one ready interval: a job a worker runs (``MemberProgram.run``).

    ``member_steps`` is the member's step count before the interval (after an exploit, its
    parent's); ``restore`` a snapshot the member loads first (an exploit, or a member rebuilt on
    another worker), ``copy_from`` a member on the same worker whose saved snapshot it loads.
    """

    member: int
    hyperparams: dict[str, Any]
    steps: int
    generation: int
    seconds: float | None
    member_steps: int
    restore: dict[str, Any] | None = None
    copy_from: int | None = None


@dataclass
class MemberOutcome:
    """One member's interval: its fitness, the steps it took, its new snapshot (None: it failed,
    its saved state stays)."""

    member: int
    value: float
    trained: int
    snapshot: dict[str, Any] | None


@dataclass
class MemberProgram:
    """The user's ``init``, ``step``, ``evaluate`` and ``data`` without any member state: what a
    worker holds once (Ray's object store) to train the members that live there."""

    init_fn: Callable[[int, torch.Generator], MemberState]
    step_fn: Callable[[MemberState, dict[str, Any], Any], Any]
    eval_fn: Callable[[MemberState], float]
    data_fn: Callable[[int, int, int], Any] | None
    seed: int
    member_errors: str
    clock: Callable[[], float]

    def fresh(self, member: int) -> MemberState:
        """Member ``member`` as ``init`` makes it (key (seed, 0, member, "pbt_init"))."""
        return self.init_fn(member, nrandom.member_generator(self.seed, 0, member, "pbt_init"))

    def step_data(
        self, generation: int, k: int, member: int, steps: int, seconds: float | None, member_steps: int
    ) -> Any:
        """``data`` of step ``k`` of the interval: the user's ``data`` or a keyed generator.

        Keyed by the interval's position (steps mode), or by the member's own step count (seconds
        mode, where an interval's length is not known in advance).
        """
        if self.data_fn is not None:
            return self.data_fn(generation, k, member)
        index = member_steps + k if seconds is not None else generation * steps + k
        return nrandom.member_generator(self.seed, index, member, "pbt_step")

    def train(self, state: MemberState, job: MemberJob) -> tuple[float, int]:
        """Train ``state`` one interval (``job.steps``, or ``job.seconds`` of ``clock``); (fitness, steps)."""
        start, k, steps, seconds = self.clock(), 0, job.steps, job.seconds
        while (k < steps) if seconds is None else (k == 0 or self.clock() - start < seconds):
            data = self.step_data(job.generation, k, job.member, steps, seconds, job.member_steps)
            self.step_fn(state, job.hyperparams, data)
            k += 1
        return float(self.eval_fn(state)), k

    def run(
        self, state: MemberState | None, saved: dict[str, Any] | None, job: MemberJob
    ) -> tuple[MemberState, MemberOutcome]:
        """Train one member (``None``: a fresh one) whose saved snapshot is ``saved``.

        A step or evaluate that raises propagates (``member_errors = "raise"``) or gives NaN and
        puts the member back to ``saved`` (``"nan"``).
        """
        if state is None:
            state = self.fresh(job.member)
        try:
            value, trained = self.train(state, job)
        except Exception:
            if self.member_errors == "raise":
                raise
            state = self.fresh(job.member)
            if saved is not None:
                _restore(state, saved)
            return state, MemberOutcome(job.member, float("nan"), 0, None)
        return state, MemberOutcome(job.member, value, trained, _snapshot(state))


class PBTSequential(Task):
    """Members trained one by one with a user's ``init``, ``step`` and ``evaluate`` (Python only)."""

    name = "pbt_sequential"
    provides: ClassVar[frozenset[Capability]] = frozenset({Capability.TRAINING})

    def __init__(
        self,
        init: Callable[[int, torch.Generator], MemberState],
        step: Callable[[MemberState, dict[str, Any], Any], Any],
        evaluate: Callable[[MemberState], float],
        *,
        data: Callable[[int, int, int], Any] | None = None,
        member_errors: Literal["raise", "nan"] = "raise",
        seed: int = 0,
        device: Any = "cpu",
    ):
        if member_errors not in ("raise", "nan"):
            raise ConfigError(f"member_errors = {member_errors!r}; allowed: raise, nan")
        self.member_errors = member_errors
        self.init_fn, self.step_fn, self.eval_fn, self.data_fn = init, step, evaluate, data
        self.seed = int(seed)
        self.members: list[MemberState] = []
        self.saved: list[dict[str, Any] | None] = []
        self.steps: list[int] = []
        #: counts ``load_state_dict`` calls: members held elsewhere are stale after one
        self.revision = 0
        #: the clock of ``ready_seconds`` intervals (a test may replace it)
        self.clock: Callable[[], float] = time.monotonic

    def member_program(self) -> MemberProgram:
        """What trains one member, without the members: a worker's copy of this task."""
        return MemberProgram(
            self.init_fn, self.step_fn, self.eval_fn, self.data_fn, self.seed, self.member_errors, self.clock
        )

    def _book(self, size: int) -> None:
        """Saved snapshots and step counts for ``size`` members (the driver's part of the state)."""
        if not self.saved:
            self.saved, self.steps = [None] * size, [0] * size
        if len(self.saved) != size:
            raise ValueError(f"the population has {size} members; the task trains {len(self.saved)}")

    def _ensure(self, size: int) -> None:
        if not self.members:
            program = self.member_program()
            self.members = [program.fresh(i) for i in range(size)]
            for i, saved in enumerate(self.saved):
                if saved is not None:
                    _restore(self.members[i], saved)
        self._book(size)
        if len(self.members) != size:
            raise ValueError(f"the population has {size} members; the task trains {len(self.members)}")

    def exploit_saved(self, parents: torch.Tensor) -> list[int]:
        """Members with ``parents[i] >= 0`` take their parent's saved snapshot and step count
        (simultaneous copies); the live members are not touched. Returns those members."""
        dst = [i for i, p in enumerate(parents.tolist()) if p >= 0]
        snapshots = {i: self.saved[int(parents[i])] for i in dst}
        for i in dst:
            if snapshots[i] is None:
                raise RuntimeError(
                    f"exploit from member {int(parents[i])}, which has no saved state at this ready point"
                )
        steps = list(self.steps)
        for i in dst:
            self.saved[i] = copy.deepcopy(snapshots[i])
            self.steps[i] = steps[int(parents[i])]
        return dst

    def apply_exploit(self, parents: torch.Tensor) -> list[int]:
        """Members with ``parents[i] >= 0`` load their parent's saved snapshot (simultaneous copies)."""
        dst = self.exploit_saved(parents)
        for i in dst:
            _restore(self.members[i], self.saved[i])  # type: ignore[arg-type]
        return dst

    def begin_interval(self, population: Any, generation: int) -> tuple[list[MemberJob], dict[int, int]]:
        """The driver's start of a ready interval: exploit copies on the saved snapshots, then one
        job per member. Returns the jobs and ``{member: parent}`` of the exploited members."""
        size = len(population)
        self._book(size)
        parents = population.parents
        copies = {i: int(p) for i, p in enumerate(parents.tolist()) if p >= 0}
        self.exploit_saved(parents)
        space, steps = population.space, int(population.steps)
        seconds = getattr(population, "seconds", None)
        jobs = [
            MemberJob(i, space.row(population.values[i]), steps, generation, seconds, self.steps[i])
            for i in range(size)
        ]
        return jobs, copies

    def end_interval(self, population: Any, outcomes: Sequence[MemberOutcome]) -> Fitness:
        """Store the members' new snapshots and step counts; the population's Fitness."""
        size = len(population)
        values = torch.empty(size, dtype=torch.float64)
        trained = torch.zeros(size, dtype=torch.long)
        failed = 0
        for out in sorted(outcomes, key=lambda o: o.member):
            i = out.member
            values[i], trained[i] = out.value, out.trained
            if out.snapshot is None:  # failed: NaN fitness (the strategy's on_nan policy), saved stays
                failed += 1
                continue
            self.steps[i] += int(out.trained)
            self.saved[i] = out.snapshot
        population.trained = trained
        metrics = {"failed_members": float(failed)}
        return Fitness(values=values, steps=int(trained.sum()), metrics=metrics)

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        self._ensure(len(population))
        jobs, copies = self.begin_interval(population, generation)
        for i in copies:
            _restore(self.members[i], self.saved[i])  # type: ignore[arg-type]
        program, outcomes = self.member_program(), []
        for job in jobs:
            i = job.member
            self.members[i], outcome = program.run(self.members[i], self.saved[i], job)
            outcomes.append(outcome)
        return self.end_interval(population, outcomes)

    def _train_member(
        self, i: int, hp: dict[str, Any], steps: int, generation: int, seconds: float | None = None
    ) -> tuple[float, int]:
        """Train member ``i`` one interval (``steps``, or ``seconds`` of ``self.clock``); (fitness, steps)."""
        job = MemberJob(i, hp, steps, generation, seconds, self.steps[i])
        return self.member_program().train(self.members[i], job)

    def step_data(
        self, generation: int, k: int, member: int, steps: int, seconds: float | None = None
    ) -> Any:
        """``data`` of step ``k`` of the interval (``MemberProgram.step_data``)."""
        return self.member_program().step_data(generation, k, member, steps, seconds, self.steps[member])

    def state_dict(self) -> dict[str, Any]:
        return {"saved": copy.deepcopy(self.saved), "steps": list(self.steps)} if self.saved else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.saved, self.steps = copy.deepcopy(state["saved"]), [int(s) for s in state["steps"]]
        self.members = []  # rebuilt and loaded from the snapshots at the next evaluate
        self.revision += 1
