"""The ``noise`` key of the Gaussian strategies: Philox-4x32-10 streams as an alternative to the
per-member Mersenne-Twister generators, recorded in checkpoints, resumed bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import torch

from neuroevo.cli import main
from neuroevo.core import philox
from neuroevo.core import random as nrandom
from neuroevo.core.contracts import GaussianMembers
from neuroevo.core.errors import ConfigError
from neuroevo.runtime import TIMING_FIELDS
from neuroevo.strategies import OpenES

GAUSSIAN = ["openes", "snes", "pgpe", "ga", "cmaes", "sep_cmaes", "eggroll"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_population_rows_are_the_philox_streams_of_the_member_keys(dtype: torch.dtype) -> None:
    members = [0, 4, 9]
    rows = nrandom.population_normal(members, (2, 3), 3, 5, "noise", dtype=dtype, generator="philox")
    assert rows.shape == (3, 2, 3) and rows.dtype == dtype
    for row, key in zip(rows, nrandom.member_keys(3, 5, members, "noise"), strict=True):
        k = torch.tensor([key])
        zero = torch.zeros_like(k)
        stream = philox.draw("normal", k & philox.M32, k >> 32, zero, zero, 6, dtype=dtype, compiled=False)
        assert torch.equal(row.reshape(-1), stream[0])
    alone = nrandom.population_normal([9], (2, 3), 3, 5, "noise", dtype=dtype, generator="philox")
    assert torch.equal(alone[0], rows[2])  # a member's row is regenerable alone
    mt = nrandom.population_normal(members, (2, 3), 3, 5, "noise", dtype=dtype)
    assert not torch.equal(mt, rows)


@pytest.mark.parametrize("generator", ["mt19937", "philox"])
def test_population_uniform_and_randint_rows_are_keyed_per_member(generator: str) -> None:
    members = [2, 5, 11]
    u = nrandom.population_uniform(members, 7, 1, 3, "coins", generator=generator)
    k = nrandom.population_randint(5, members, 7, 1, 3, "parents", generator=generator)
    assert u.shape == k.shape == (3, 7) and k.dtype == torch.int64
    assert bool(((u >= 0) & (u < 1)).all()) and bool(((k >= 0) & (k < 5)).all())
    assert torch.equal(nrandom.population_uniform([11], 7, 1, 3, "coins", generator=generator)[0], u[2])
    assert torch.equal(nrandom.population_randint(5, [5], 7, 1, 3, "parents", generator=generator)[0], k[1])
    if generator == "mt19937":  # row i is what the one-member draws give (the GA's draws before batching)
        for i, m in enumerate(members):
            assert torch.equal(u[i], nrandom.uniform(7, 1, 3, m, "coins"))
            assert torch.equal(k[i], nrandom.randint(5, 7, 1, 3, m, "parents"))


def test_openes_members_from_keys_match_its_philox_population() -> None:
    """What a Ray worker regenerates (``GaussianMembers.rows``) is the strategy's population."""
    es = OpenES(30, 10, noise="philox", seed=4)
    es.ask()
    es.tell(torch.randn(10, generator=torch.Generator().manual_seed(0)))
    population = es.ask()
    recipe = es.member_recipe()
    assert isinstance(recipe, GaussianMembers) and recipe.generator == "philox"
    assert torch.equal(recipe.rows(0, 10), population)
    assert torch.equal(recipe.rows(3, 8), population[3:8])


def test_a_philox_checkpoint_is_refused_by_mt19937_and_continued_by_auto() -> None:
    es = OpenES(12, 8, noise="philox")
    for _ in range(2):
        x = es.ask()
        es.tell(-(x * x).sum(-1))
    state = es.state_dict()
    assert state["noise"] == "philox"
    with pytest.raises(ConfigError, match="noise = 'philox'"):
        OpenES(12, 8, noise="mt19937").load_state_dict(state)
    auto = OpenES(12, 8)  # noise = "auto": mt19937 on this CPU, but a run continues with its generator
    auto.load_state_dict(state)
    assert auto.noise_generator == "philox"
    for strategy in (es, auto):
        x = strategy.ask()
        strategy.tell(-(x * x).sum(-1))
    assert torch.equal(es.center, auto.center)


def _config(strategy: str, noise: str, generations: int) -> dict[str, Any]:
    keys: dict[str, Any] = {"name": strategy, "population_size": 12, "noise": noise}
    if strategy == "ga":
        keys.update(truncation=4, crossover_prob=0.5)  # parents, coins and masks drawn by the generator too
    network = {"type": "eggroll_mlp" if strategy == "eggroll" else "mlp", "hidden": [4]}
    return {
        "run": {"generations": generations, "checkpoint_every": 1, "progress": False},
        "task": {"name": "xor"},
        "network": network,
        "strategy": keys,
    }


def _run(data: dict[str, Any], out: Path, capsys) -> None:
    config = out.with_suffix(".toml")
    config.write_text(tomli_w.dumps(data))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err


def _metrics(run: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


@pytest.mark.parametrize("strategy", GAUSSIAN)
def test_philox_runs_record_their_generator_and_resume_bit_identically(strategy, tmp_path, capsys) -> None:
    full, half, mt = tmp_path / "full", tmp_path / "half", tmp_path / "mt"
    _run(_config(strategy, "philox", 3), full, capsys)
    _run(_config(strategy, "philox", 1), half, capsys)
    assert main(["resume", str(half), "--generations", "3", "--quiet"]) == 0, capsys.readouterr().err
    assert _metrics(half) == _metrics(full)
    best = {p.name: p.read_bytes() for p in (full / "best").iterdir()}
    assert {p.name: p.read_bytes() for p in (half / "best").iterdir()} == best
    meta = json.loads(sorted((full / "checkpoints").glob("ckpt-*.json"))[-1].read_text())
    assert meta["noise"] == nrandom.PHILOX_VERSION and meta["state"]["strategy"]["noise"] == "philox"
    _run(_config(strategy, "mt19937", 3), mt, capsys)  # the key really changes the draws
    assert _metrics(mt) != _metrics(full)
    meta = json.loads(sorted((mt / "checkpoints").glob("ckpt-*.json"))[-1].read_text())
    assert meta["noise"] == nrandom.NOISE_VERSION


def test_philox_with_seed_chains_is_refused_in_one_line(tmp_path, capsys) -> None:
    """Seed chains are replayed with Mersenne-Twister generators: ``noise = "philox"`` cannot hold."""
    data = {
        "run": {"generations": 1, "progress": False},
        "task": {"name": "maze", "steps": 20},
        "network": {"type": "mlp", "hidden": [4]},
        "strategy": {"name": "ns_ga", "population_size": 12, "truncation": 4, "genome": "seeds"},
    }
    out = tmp_path / "run"
    config = tmp_path / "c.toml"
    config.write_text(tomli_w.dumps({**data, "strategy": {**data["strategy"], "noise": "philox"}}))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "strategy.noise = 'philox'" in err and not out.exists(), err
    config.write_text(tomli_w.dumps(data))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
