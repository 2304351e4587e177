"""Asynchronous PBT of the sequential task: a slow or failed member never blocks the others."""

from __future__ import annotations

import math
import threading

import pytest
import torch
import torch.nn.functional as F

from neuroevo.core.errors import ConfigError
from neuroevo.pbt_async import run_async
from neuroevo.strategies.pbt import PBT
from neuroevo.tasks.pbt_sequential import PBTSequential, set_optimizer_hyperparams

SPACE = {"lr": {"low": 1e-3, "high": 0.3, "log": True}, "momentum": {"low": 0.0, "high": 0.9}}
SIZE, INTERVALS = 4, 6


def _task(bad: int = -1, slow: threading.Event | None = None) -> PBTSequential:
    """Linear regression members; member ``bad`` raises in every step, or waits on ``slow``."""

    def init(member: int, generator: torch.Generator) -> dict:
        torch.manual_seed(member)
        model = torch.nn.Linear(2, 1)
        return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.01), "id": member}

    def step(state: dict, hp: dict, data: torch.Generator) -> None:
        if state["id"] == bad:
            if slow is None:
                raise RuntimeError("this member always fails")
            slow.wait(30)
        set_optimizer_hyperparams(state["optimizer"], hp)
        x = torch.randn(16, 2, generator=data)
        state["optimizer"].zero_grad()
        F.mse_loss(state["model"](x), x @ torch.tensor([[1.0], [-2.0]])).backward()
        state["optimizer"].step()

    def evaluate(state: dict) -> float:
        x = torch.eye(2)
        with torch.no_grad():
            return -float(F.mse_loss(state["model"](x), x @ torch.tensor([[1.0], [-2.0]])))

    return PBTSequential(init, step, evaluate, seed=0)


def _pbt(**keys) -> PBT:
    return PBT(SIZE, space=SPACE, ready_every=5, seed=0, truncation_fraction=0.5, **keys)


def _bounded(result) -> bool:
    lr, mom = result.values[:, 0], result.values[:, 1]
    return bool(((lr >= 1e-3) & (lr <= 0.3) & (mom >= 0) & (mom <= 0.9)).all())


def test_members_advance_and_exploit_only_saved_states():
    task = _task()
    result = run_async(_pbt(), task, intervals=INTERVALS, workers=2)
    assert result.ready_counts == [INTERVALS] * SIZE and result.unfinished == []
    assert len(result.events) == SIZE * INTERVALS
    exploited = [e for e in result.events if e["exploited"]]
    assert exploited and all(e["parent"] != e["member"] for e in exploited)
    assert _bounded(result) and bool(torch.isfinite(result.fitness).all())
    # every member ends on the state saved at its last ready point (its parent's, if exploited)
    for i in range(SIZE):
        saved = task.saved[i]["model"]
        assert torch.equal(task.members[i]["model"].weight, saved["weight"])


def test_a_member_that_raises_fails_alone_and_copies_a_good_member():
    task = _task(bad=0)
    result = run_async(_pbt(), task, intervals=INTERVALS, workers=2, max_failures=3)
    assert result.failures[0] == 3 and result.ready_counts[0] == 3
    assert result.ready_counts[1:] == [INTERVALS] * (SIZE - 1)
    bad = [e for e in result.events if e["member"] == 0]
    assert all(e["failed"] and math.isnan(e["fitness"]) for e in bad)
    # once others have saved states, the failed member copies one of them
    assert any(e["exploited"] and e["parent"] != 0 for e in bad)
    assert bool(torch.isfinite(result.fitness[1:]).all())


def test_a_member_that_hangs_does_not_stop_the_others():
    gate = threading.Event()
    try:
        task = _task(bad=1, slow=gate)
        result = run_async(_pbt(), task, intervals=INTERVALS, workers=2, timeout=4)
    finally:
        gate.set()
    assert result.unfinished == [1] and result.ready_counts[1] == 0
    assert [result.ready_counts[i] for i in (0, 2, 3)] == [INTERVALS] * 3
    assert all(e["member"] != 1 for e in result.events)


def test_pb2_is_synchronous_only():
    with pytest.raises(ConfigError, match="pb2"):
        run_async(_pbt(explore="pb2"), _task(), intervals=2)


# -- asynchronous mode of the strategy (staggered ready points, stacked task) ---------------------
def test_async_exploit_copies_the_parents_saved_state_not_its_current_one():
    from neuroevo.nn.trainable import TrainableMLP
    from neuroevo.tasks.pbt import PBTSupervised

    strategy = PBT(
        8, space=SPACE, ready_every=4, mode="async", async_groups=2, seed=5, truncation_fraction=0.25
    )
    task, net = PBTSupervised(dataset="iris", seed=5), TrainableMLP([4, 8, 3])
    copies = older = 0
    for _ in range(12):
        population = strategy.ask()
        parents = population.parents
        if task.snapshot is not None and bool((parents >= 0).any()):
            dst = torch.nonzero(parents >= 0).flatten()
            wanted = [s[parents[dst]].clone() for s in task.snapshot]
            current_parents = [t[parents[dst]].clone() for t in task.stacked_tensors()]
            task.apply_exploit(parents)
            for want, now in zip(wanted, task.stacked_tensors(), strict=True):
                assert torch.equal(now[dst], want)  # the saved rows, byte for byte
            # a parent of the other group has trained on since its ready point: saved != current
            older += any(not torch.equal(w, c) for w, c in zip(wanted, current_parents, strict=True))
            population.parents = torch.full_like(parents, -1)  # applied above
            copies += 1
        fitness = task.evaluate(net, population, strategy.generation)
        assert population.ready.tolist() == [(i % 2) == (strategy.generation % 2) for i in range(8)]
        strategy.tell(fitness)
        ready = torch.nonzero(population.ready).flatten()
        for t, s in zip(task.stacked_tensors(), task.snapshot, strict=True):  # ready members were saved
            assert torch.equal(t[ready], s[ready])
        values = strategy.state.values
        assert bool(
            (
                (values[:, 0] >= 1e-3) & (values[:, 0] <= 0.3) & (values[:, 1] >= 0) & (values[:, 1] <= 0.9)
            ).all()
        )
    assert copies >= 3 and older >= 1
    assert task.step.tolist() == strategy.state.member_steps.tolist()


@pytest.mark.parametrize(
    "keys, words",
    [
        ({"explore": "pb2"}, "pb2"),
        ({"async_groups": 3}, "async_groups"),
        ({"async_groups": 5}, "async_groups"),
        ({"ready_seconds": 1.0}, "ready_seconds"),
    ],
)
def test_async_mode_config_errors(keys, words):
    from neuroevo.config import validate_config

    strategy = {"name": "pbt", "population_size": 4, "ready_every": 8, "mode": "async", **keys}
    data = {"task": {"name": "pbt_supervised", "dataset": "iris"}, "network": {"type": "trainable_mlp"}}
    with pytest.raises(ConfigError, match=words):
        validate_config({**data, "strategy": strategy})
