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
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
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
        #: the clock of ``ready_seconds`` intervals (a test may replace it)
        self.clock: Callable[[], float] = time.monotonic

    def _ensure(self, size: int) -> None:
        if not self.members:
            self.members = [
                self.init_fn(i, nrandom.member_generator(self.seed, 0, i, "pbt_init")) for i in range(size)
            ]
            for i, saved in enumerate(self.saved):
                if saved is not None:
                    _restore(self.members[i], saved)
            if not self.saved:
                self.saved, self.steps = [None] * size, [0] * size
        if len(self.members) != size:
            raise ValueError(f"the population has {size} members; the task trains {len(self.members)}")

    def apply_exploit(self, parents: torch.Tensor) -> list[int]:
        """Members with ``parents[i] >= 0`` load their parent's saved snapshot (simultaneous copies)."""
        dst = [i for i, p in enumerate(parents.tolist()) if p >= 0]
        snapshots = {i: self.saved[int(parents[i])] for i in dst}
        for i in dst:
            parent = int(parents[i])
            if snapshots[i] is None:
                raise RuntimeError(
                    f"exploit from member {parent}, which has no saved state at this ready point"
                )
            _restore(self.members[i], snapshots[i])
            self.saved[i] = copy.deepcopy(snapshots[i])
        steps = list(self.steps)
        for i in dst:
            self.steps[i] = steps[int(parents[i])]
        return dst

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        size, steps = len(population), int(population.steps)
        seconds = getattr(population, "seconds", None)
        self._ensure(size)
        self.apply_exploit(population.parents)
        space = population.space
        values = torch.empty(size, dtype=torch.float64)
        trained = torch.zeros(size, dtype=torch.long)
        failed = 0
        for i in range(size):
            try:
                hp = space.row(population.values[i])
                values[i], trained[i] = self._train_member(i, hp, steps, generation, seconds)
            except Exception:
                if self.member_errors == "raise":
                    raise
                failed += 1  # its fitness is NaN (the strategy's on_nan policy); its saved state stays
                values[i] = float("nan")
                self.members[i] = self.init_fn(i, nrandom.member_generator(self.seed, 0, i, "pbt_init"))
                if self.saved[i] is not None:
                    _restore(self.members[i], self.saved[i])
                continue
            self.steps[i] += int(trained[i])
            self.saved[i] = _snapshot(self.members[i])
        population.trained = trained
        metrics = {"failed_members": float(failed)}
        return Fitness(values=values, steps=int(trained.sum()), metrics=metrics)

    def _train_member(
        self, i: int, hp: dict[str, Any], steps: int, generation: int, seconds: float | None = None
    ) -> tuple[float, int]:
        """Train member ``i`` one interval (``steps``, or ``seconds`` of ``self.clock``); (fitness, steps)."""
        start, k = self.clock(), 0
        while (k < steps) if seconds is None else (k == 0 or self.clock() - start < seconds):
            self.step_fn(self.members[i], hp, self.step_data(generation, k, i, steps, seconds))
            k += 1
        return float(self.eval_fn(self.members[i])), k

    def step_data(
        self, generation: int, k: int, member: int, steps: int, seconds: float | None = None
    ) -> Any:
        """``data`` of step ``k`` of the interval: the user's ``data`` or a keyed generator.

        Keyed by the interval's position (steps mode), or by the member's own step count (seconds
        mode, where an interval's length is not known in advance).
        """
        if self.data_fn is not None:
            return self.data_fn(generation, k, member)
        index = self.steps[member] + k if seconds is not None else generation * steps + k
        return nrandom.member_generator(self.seed, index, member, "pbt_step")

    def state_dict(self) -> dict[str, Any]:
        return {"saved": copy.deepcopy(self.saved), "steps": list(self.steps)} if self.saved else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.saved, self.steps = copy.deepcopy(state["saved"]), [int(s) for s in state["steps"]]
        self.members = []  # rebuilt and loaded from the snapshots at the next evaluate
