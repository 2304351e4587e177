"""PBT's ``ready_seconds``: a ready point every N seconds of training instead of every N steps."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from neuroevo.core.errors import ConfigError
from neuroevo.nn.trainable import TrainableMLP
from neuroevo.runtime import evolve
from neuroevo.strategies.pbt import PBT
from neuroevo.tasks.pbt import PBTSupervised
from neuroevo.tasks.pbt_sequential import PBTSequential, set_optimizer_hyperparams

SPACE = {"lr": {"low": 1e-3, "high": 0.5, "log": True}}


class FakeClock:
    """Advances one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_stacked_task_trains_until_the_interval_has_passed_on_its_clock():
    # start at t=1; after step k the clock reads 1 + k; 1 + k - 1 >= 3.5 first at k = 4
    task = PBTSupervised(dataset="iris", seed=0)
    task.clock = FakeClock()
    strategy = PBT(4, space=SPACE, ready_every=1000, ready_seconds=3.5, seed=0)
    evolve(strategy, TrainableMLP([4, 8, 3]), task, generations=3)
    assert task.step.tolist() == [12, 12, 12, 12]
    events = strategy.events()
    assert sorted({e["step"] for e in events}) == [4, 8, 12]
    assert all(e["age"] in (4, 8, 12) for e in events)
    schedule = strategy.schedule(events)
    assert [(s["from_step"], s["to_step"]) for s in schedule] == [(0, 4), (4, 8), (8, 12)]


def test_sequential_members_each_train_for_the_interval_in_real_time():
    def init(member: int, generator: torch.Generator) -> dict:
        torch.manual_seed(member)
        model = torch.nn.Linear(2, 1)
        return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.01)}

    def step(state: dict, hp: dict, data: torch.Generator) -> None:
        set_optimizer_hyperparams(state["optimizer"], hp)
        x = torch.randn(8, 2, generator=data)
        state["optimizer"].zero_grad()
        F.mse_loss(state["model"](x), x.sum(1, keepdim=True)).backward()
        state["optimizer"].step()
        time.sleep(0.002)

    def evaluate(state: dict) -> float:
        x = torch.ones(4, 2)
        with torch.no_grad():
            return -float(F.mse_loss(state["model"](x), x.sum(1, keepdim=True)))

    task = PBTSequential(init, step, evaluate, seed=0)
    strategy = PBT(3, space=SPACE, ready_every=10**9, ready_seconds=0.03, seed=0)
    evolve(strategy, None, task, generations=2)
    events = strategy.events()
    first = [e["step"] for e in events if e["generation"] == 0]
    assert all(2 <= s < 1000 for s in first)  # time, not ready_every, ended the interval
    # the strategy's step counts are the steps each member's state has really taken
    assert task.steps == strategy.state.last_ready_step.tolist()


def test_ready_seconds_must_be_positive():
    with pytest.raises((ConfigError, ValueError)):
        PBT(4, space=SPACE, ready_seconds=0)
