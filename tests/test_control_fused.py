"""The fused rollout: eager it equals the plain rollout bit for bit; compiled it gives the same
fitness to float tolerance; ``compile = "auto"`` picks by batch size; a fallback keeps it running."""

from __future__ import annotations

import logging
import os
from math import pi

import pytest
import torch

from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.tasks.control import ENVS, ControlTask
from neuroevo.tasks.control import fused as fused_mod
from neuroevo.tasks.control.acrobot import _wrap
from neuroevo.tasks.control.fused import COMPILE_MIN_ROWS

FIELDS = ("returns", "lengths", "obs_count", "obs_sum", "obs_sumsq")


def _setup(env: str, *, size: int = 24, episodes: int = 3, dtype: str = "float32", **keys):
    task = ControlTask(env, episodes=episodes, dtype=dtype, seed=2, **keys)
    if task.obs_norm.enabled:  # non-trivial statistics, so normalisation matters
        n = task.in_features
        task.obs_norm.update(50.0, torch.full((n,), 5.0), torch.full((n,), 90.0))
    net = PopulationMLP([task.in_features, 8, task.out_features], dtype=task.dtype)
    gens = [nrandom.member_generator(0, 0, i, "init") for i in range(size)]
    pop = torch.stack([net.init_params(g) for g in gens]) * 2.0  # varied episode lengths
    return task, net, pop, task.initial_states(episodes, 0, 0, "episodes")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("env", list(ENVS))
def test_eager_fused_equals_plain_rollout_bit_for_bit(env: str, dtype: str) -> None:
    task, net, pop, init = _setup(env, dtype=dtype, max_steps=120)
    fused = task.fused_rollout(net, pop, init, compiled=False)
    plain = task.plain_rollout(net, pop, init)
    for field in FIELDS:
        assert torch.equal(getattr(fused, field), getattr(plain, field)), field
    assert fused.steps == plain.steps == int(plain.lengths.sum())
    if env == "CartPole-v1":  # episodes of many lengths: compaction and masking both happen
        assert plain.lengths.min() < 40 and plain.lengths.max() == 120


def test_fused_compaction_keeps_results_and_evaluate_uses_fused() -> None:
    task, net, pop, init = _setup("CartPole-v1", size=40)
    loose = ControlTask("CartPole-v1", episodes=3, seed=2, compact=False)
    loose.obs_norm.load_state_dict(task.obs_norm.state_dict())
    a = task.fused_rollout(net, pop, init, compiled=False)
    b = loose.fused_rollout(net, pop, init, compiled=False)
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    fitness = task.evaluate(net, pop, 0)
    assert torch.equal(fitness.values, a.returns.mean(1)) and fitness.steps == a.steps


def test_auto_compiles_only_large_batches(monkeypatch) -> None:
    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    assert not ControlTask("CartPole-v1").use_compile(10**6)  # the default: eager
    auto = ControlTask("CartPole-v1", compile="auto")
    assert not auto.use_compile(COMPILE_MIN_ROWS - 1) and auto.use_compile(COMPILE_MIN_ROWS)
    assert ControlTask("CartPole-v1", compile=True).use_compile(1)
    assert not ControlTask("CartPole-v1", compile=False).use_compile(10**6)
    monkeypatch.setenv("NEUROEVO_COMPILE", "0")
    assert not auto.use_compile(10**6)


def test_compile_key_is_validated() -> None:
    with pytest.raises(ConfigError, match="compile"):
        ControlTask("CartPole-v1", compile="sometimes")


def test_not_fusable_falls_back_to_the_plain_rollout() -> None:
    task = ControlTask("CartPole-v1", episodes=2, deterministic=False, seed=1)
    net = PopulationMLP([4, 8, 2])
    pop = torch.stack([net.init_params(nrandom.member_generator(0, 0, i, "init")) for i in range(6)])
    assert not fused_mod.fusable(net, pop, deterministic=False)
    assert not fused_mod.fusable(
        PopulationMLP([4, 8, 2], activation=[["tanh"] * 4 + ["relu"] * 4]), pop, deterministic=True
    )
    gen = nrandom.member_generator(1, 0, 0, "actions")
    a = task.rollout(net, pop, task.initial_states(2, 0, 0, "episodes"), action_generator=gen)
    gen = nrandom.member_generator(1, 0, 0, "actions")
    b = task.plain_rollout(net, pop, task.initial_states(2, 0, 0, "episodes"), action_generator=gen)
    assert torch.equal(a.returns, b.returns)


def test_traced_wrap_equals_gymnasium_loop() -> None:
    x = torch.linspace(-5 * pi, 5 * pi, 1001, dtype=torch.float64)
    assert torch.equal(_wrap(x, -pi, pi, traced=True), _wrap(x, -pi, pi))


def test_failed_compile_runs_eager_with_one_warning(monkeypatch, caplog, tmp_path) -> None:
    def broken(fn, **options):
        def run(*args, **kwargs):
            raise RuntimeError("CppCompileError: no compiler\ndetails")

        return run

    def no_export(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    monkeypatch.setenv("NEUROEVO_AOT_DIR", str(tmp_path))  # no cached package
    monkeypatch.setattr(torch.export, "export", no_export)  # AOTInductor fails: torch.compile next
    monkeypatch.setattr(torch, "compile", broken)  # which fails too: eager, one warning
    monkeypatch.setattr(fused_mod, "_BLOCKS", {})
    task, net, pop, init = _setup("Pendulum-v1", max_steps=30)
    with caplog.at_level(logging.WARNING, logger="neuroevo.compile"):  # AOTInductor's failure: INFO
        a = task.fused_rollout(net, pop, init, compiled=True)
        a2 = task.fused_rollout(net, pop, init, compiled=True)
    b = task.fused_rollout(net, pop, init, compiled=False)
    assert torch.allclose(a.returns, b.returns, rtol=1e-5) and torch.equal(a.returns, a2.returns)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "Pendulum-v1 fused rollout" in lines[0]


#: a cold AOTInductor compile costs ~10 s or more per env on 2 cores: by default one discrete and
#: one continuous env; NEUROEVO_TEST_COMPILED_ENVS=all: every env
ALL_COMPILED = os.environ.get("NEUROEVO_TEST_COMPILED_ENVS") == "all"
COMPILED_ENVS = list(ENVS) if ALL_COMPILED else ["CartPole-v1", "Pendulum-v1"]


@pytest.mark.slow
@pytest.mark.parametrize("env", COMPILED_ENVS)
def test_compiled_fused_gives_the_eager_fitness(env: str, monkeypatch, tmp_path) -> None:
    """AOTInductor (cold: tens of seconds per env) against eager; float64 so rounding never flips
    an episode's end, and the same fitness, episode lengths and observation statistics; a new
    process (a fresh block) loads the package written by the first."""
    monkeypatch.setenv("NEUROEVO_COMPILE", "1")
    monkeypatch.setenv("NEUROEVO_AOT_DIR", str(tmp_path))
    monkeypatch.setattr(fused_mod, "_BLOCKS", {})
    task, net, pop, init = _setup(env, size=16, episodes=2, dtype="float64", max_steps=60)
    compiled = task.fused_rollout(net, pop, init, compiled=True)
    eager = task.fused_rollout(net, pop, init, compiled=False)
    assert torch.equal(compiled.lengths, eager.lengths) and compiled.steps == eager.steps
    for field in ("returns", "obs_count", "obs_sum", "obs_sumsq"):
        assert torch.allclose(getattr(compiled, field), getattr(eager, field), rtol=1e-9, atol=1e-9), field
    packages = list(tmp_path.glob("*.pt2"))
    assert len(packages) == 1 and isinstance(
        fused_mod._BLOCKS[next(iter(fused_mod._BLOCKS))], fused_mod.AotBlock
    )
    monkeypatch.setattr(fused_mod, "_BLOCKS", {})
    monkeypatch.setattr(torch.export, "export", None)  # a cached package needs no export
    again = task.fused_rollout(net, pop, init, compiled=True)
    assert torch.equal(again.returns, compiled.returns)
