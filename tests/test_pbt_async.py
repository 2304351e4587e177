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
