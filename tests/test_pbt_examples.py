"""The PBT example scripts solve their tasks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from neuroevo.nn.trainable import TrainableMLP
from neuroevo.runtime import evolve
from neuroevo.strategies.pbt import PBT

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cartpole_pbt_reaches_475(tmp_path):
    """REINFORCE + baseline, lr and entropy coefficient evolved: greedy mean return >= 475 (100 episodes)."""
    example = _load("cartpole_pbt")
    space = {
        "lr": {"low": 1e-3, "high": 0.1, "log": True},
        "entropy_coef": {"low": 1e-4, "high": 0.1, "log": True},
    }
    strategy = PBT(8, space=space, ready_every=10, seed=0)
    task = example.CartPoleReinforce(seed=0)
    result = evolve(strategy, TrainableMLP([4, 32, 2], "tanh"), task, generations=3, run_dir=tmp_path)
    assert result.validation["eval_return_mean"] >= 475
    assert result.best.fitness >= 475
    assert torch.equal(task.step, torch.full((8,), 30))  # every member's lineage took 30 updates
