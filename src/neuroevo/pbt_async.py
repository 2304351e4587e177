"""Asynchronous PBT (Jaderberg et al. 2017, section 3) for the sequential task.

In synchronous PBT every member waits at each ready point for the slowest one. Here each member
reaches its ready point on its own: ``run_async(strategy, task)`` trains the members of a
``PBTSequential`` task on a pool of worker threads, one ready interval per job. When a member's
job ends (the driver thread, never a worker, does this):

1. its state is snapshotted (the saved state of this ready point) and its fitness recorded;
2. exploit against the *latest* saved states and fitnesses of the others (``truncation``: if it
   ranks in the bottom ``truncation_fraction`` of the members that have a saved state, it copies
   one of the top fraction drawn uniformly; ``tournament``: it copies one other member drawn
   uniformly if that one's latest fitness is higher; ``none``: never). Only a saved state is
   ever copied: a member that has not reached its first ready point cannot be a parent;
3. explore as in ``PBT`` (perturb by a factor or resample, bounded by ``bounds``);
4. its next interval is submitted at once.

A member whose step or evaluation raises has fitness NaN: it ranks below every other, copies a
good member's saved state if there is one (else goes back to its own), and goes on; after
``max_failures`` failures it stops. A slow member holds only its own worker: the others keep
reaching their ready points. ``timeout`` ends the run without waiting for members still
training (they are reported as ``unfinished``; their threads finish their interval in the
background and are discarded).

It joins a strategy (``PBT``: space, rules, seed) and a task (``PBTSequential``), which only
the runtime layer does, so it lives beside ``pbt_replay`` rather than in ``strategies``.

The member step stays ``step(member_state, hyperparams, data)`` (see ``PBTSequential``), so an
executor can move a job to another process or a Ray actor. Draws come from
``neuroevo.core.random`` keys (seed, the member's ready count, member, purpose), but the order in
which members reach ready points depends on timing, so an asynchronous run is not reproducible
and is not checkpointed. ``neuroevo run`` and ``resume`` run the stacked task, synchronous or,
with ``[strategy] mode = "async"``, with staggered ready points (``PBT``'s asynchronous mode,
bit-identical on resume). PB2 needs the whole population's interval data and is synchronous only.
"""

from __future__ import annotations

import copy
import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.strategies.pbt.strategy import PBT
from neuroevo.tasks.pbt_sequential import PBTSequential, _restore, _snapshot


@dataclass
class AsyncResult:
    """What ``run_async`` returns: the ready events (as in ``pbt.jsonl``) and the final members."""

    events: list[dict[str, Any]]
    fitness: torch.Tensor  # [P] latest fitness of every member (NaN: none yet, or failed)
    values: torch.Tensor  # [P, H] current hyperparameters
    ready_counts: list[int]
    failures: list[int]
    unfinished: list[int] = field(default_factory=list)  # members still training at the timeout

    @property
    def best(self) -> int:
        """The member with the highest latest fitness."""
        f = torch.where(torch.isfinite(self.fitness), self.fitness, torch.full_like(self.fitness, -math.inf))
        return int(torch.argmax(f))


def run_async(
    strategy: PBT,
    task: PBTSequential,
    *,
    intervals: int,
    workers: int = 2,
    timeout: float | None = None,
    max_failures: int = 3,
) -> AsyncResult:
    """Asynchronous PBT of ``task``'s members with ``strategy``'s space and rules, ``intervals`` each."""
    p, space, size = strategy.params, strategy.space, strategy.population_size
    if p.explore == "pb2":
        raise ConfigError("strategy.explore = 'pb2' with asynchronous PBT; allowed: perturb")
    if intervals < 1 or workers < 1 or max_failures < 1:
        raise ConfigError(
            f"intervals = {intervals}, workers = {workers}, max_failures = {max_failures}; allowed: >= 1 each"
        )
    task._ensure(size)
    values = strategy.state.values.clone()
    fitness = torch.full((size,), float("nan"), dtype=torch.float64)
    ready, failures, ages = [0] * size, [0] * size, [0] * size
    events: list[dict[str, Any]] = []
    deadline = None if timeout is None else time.monotonic() + timeout

    def job(i: int, hp: dict[str, Any], interval: int) -> tuple[float, int]:
        return task._train_member(i, hp, p.ready_every, interval, p.ready_seconds)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pbt-member")
    running: dict[Future, int] = {}

    def submit(i: int) -> None:
        running[pool.submit(job, i, space.row(values[i]), ready[i])] = i

    try:
        for i in range(size):
            submit(i)
        while running:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            done, _ = wait(list(running), timeout=left, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f]):
                i = running.pop(future)
                old = values[i].clone()
                try:
                    f, steps = future.result()
                except Exception:
                    f, steps = float("nan"), 0
                    failures[i] += 1
                    task.members[i] = task.init_fn(i, nrandom.member_generator(task.seed, 0, i, "pbt_init"))
                    if task.saved[i] is not None:
                        _restore(task.members[i], task.saved[i])
                else:
                    task.steps[i] += steps
                    task.saved[i] = _snapshot(task.members[i])
                fitness[i] = f
                ages[i] += steps
                step_at_ready = task.steps[i]
                parent = _exploit(strategy, task, fitness, i, ready[i])
                if parent >= 0:
                    _restore(task.members[i], task.saved[parent])
                    task.saved[i] = copy.deepcopy(task.saved[parent])
                    task.steps[i] = task.steps[parent]
                    values[i] = _explore(strategy, values[parent], i, ready[i])
                events.append(
                    {
                        "generation": ready[i],
                        "member": i,
                        "step": step_at_ready,
                        "fitness": f,
                        "parent": parent if parent >= 0 else i,
                        "exploited": parent >= 0,
                        "age": ages[i],
                        "old": space.row(old),
                        "new": space.row(values[i]),
                        "failed": not math.isfinite(f),
                    }
                )
                if parent >= 0:
                    ages[i] = 0
                ready[i] += 1
                if ready[i] < intervals and failures[i] < max_failures:
                    submit(i)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return AsyncResult(events, fitness, values, ready, failures, sorted(running.values()))


def _exploit(strategy: PBT, task: PBTSequential, fitness: torch.Tensor, i: int, count: int) -> int:
    """Whose latest saved state member ``i`` copies at its ready point (-1: none)."""
    p, size = strategy.params, strategy.population_size
    if p.exploit == "none":
        return -1
    has = torch.tensor([s is not None for s in task.saved]) & torch.isfinite(fitness)
    has[i] = False
    if not bool(has.any()):
        return -1
    u = float(nrandom.uniform(1, strategy.seed, count, i, "pbt_async_exploit")[0])
    mine = float(fitness[i])
    if p.exploit == "tournament":
        others = [j for j in range(size) if j != i]
        j = others[min(int(u * len(others)), len(others) - 1)]
        better = bool(has[j]) and (not math.isfinite(mine) or float(fitness[j]) > mine)
        return j if better else -1
    # truncation among the members with a saved state (and i itself)
    pool = torch.nonzero(has).reshape(-1)
    order = pool[torch.sort(fitness[pool], descending=True, stable=True).indices]
    n = max(1, math.floor(p.truncation_fraction * (order.numel() + 1)))
    top = order[:n]
    if math.isfinite(mine):
        beaten = int((fitness[pool] > mine).sum())  # i's rank among pool + itself
        if beaten < order.numel() + 1 - n:
            return -1  # not in the bottom fraction
    return int(top[min(int(u * n), n - 1)])


def _explore(strategy: PBT, start: torch.Tensor, i: int, count: int) -> torch.Tensor:
    """Member ``i``'s new values from its parent's ``start[H]``: perturb or resample, bounded."""
    p, h = strategy.params, len(strategy.space)
    draws = nrandom.uniform((3, h), strategy.seed, count, i, "pbt_async_explore").double()
    factors = torch.tensor(p.perturb_factors, dtype=torch.float64)
    pick = (draws[0] * len(factors)).long().clamp(0, len(factors) - 1)
    resample = draws[1] < p.resample_probability
    out = strategy.space.perturb(
        start.unsqueeze(0), factors[pick][None], resample[None], draws[2][None], p.bounds
    )
    return out[0]
