"""PBT through the runtime: TOML config, `neuroevo run`/`resume`, checkpoints, best/, pbt.jsonl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from neuroevo.config import build, load_config
from neuroevo.nn.trainable import TrainableMLP
from neuroevo.runtime import evolve
from neuroevo.runtime.rundir import TIMING_FIELDS, RunDir
from neuroevo.strategies.pbt import PBT
from neuroevo.tasks.pbt import PBTSupervised

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_pbt.toml"


def _deterministic(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


def _make(explore: str):
    space = {
        "lr": {"low": 1e-3, "high": 0.3, "log": True},
        "beta1": {"low": 0.5, "high": 0.95},
        "batch_size": {"type": "integer", "low": 8, "high": 48},
        "dropout": {"type": "categorical", "choices": [0.0, 0.1, 0.3]},
    }
    strategy = PBT(6, space=space, ready_every=6, explore=explore, pb2_candidates=32, seed=11)
    return strategy, TrainableMLP([4, 8, 3]), PBTSupervised(dataset="iris", optimizer="adamw", seed=11)


@pytest.mark.parametrize("explore", ["perturb", "pb2"])
def test_resume_is_bit_identical_scheduler_state_included(tmp_path, explore):
    full = evolve(*_make(explore), generations=9, run_dir=tmp_path / "full", checkpoint_every=3)
    evolve(*_make(explore), generations=5, run_dir=tmp_path / "part", checkpoint_every=3)
    strategy, net, task = _make(explore)
    resumed = evolve(
        strategy, net, task, generations=9, run_dir=tmp_path / "part", checkpoint_every=3, resume=True
    )
    a, b = RunDir(tmp_path / "full"), RunDir(tmp_path / "part")
    assert _deterministic(a.read_metrics()) == _deterministic(b.read_metrics())
    assert torch.equal(full.best.params, resumed.best.params)
    for name in ("pbt.jsonl", "best/schedule.json", "best/params.safetensors"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    state_a, state_b = (
        a.latest_checkpoint()[1]["strategy"]["state"],
        b.latest_checkpoint()[1]["strategy"]["state"],
    )
    for key in ("values", "parents", "ages", "member_steps", "pb2_x", "pb2_y", "best_member"):
        assert torch.equal(state_a[key], state_b[key]), key
    if explore == "pb2":
        assert strategy.state.pb2_y.numel() > 0
    events = [json.loads(line) for line in (a.path / "pbt.jsonl").read_text().splitlines()]
    assert len(events) == 9 * 6
    assert {"member", "step", "parent", "old", "new", "fitness"} <= set(events[0])
    assert any(e["exploited"] and e["parent"] != e["member"] for e in events)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import neuroevo.nn.stacked as stacked
    limit = int(sys.argv.pop(1))
    real = stacked.VectorSGD.step
    calls = [0]

    def dying_step(self, *a, **k):
        calls[0] += 1
        if calls[0] == limit:  # SIGKILL in the middle of a ready interval
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *a, **k)

    stacked.VectorSGD.step = dying_step
    from neuroevo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _short_config(tmp_path: Path, generations: int, ready_every: int) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("generations = 20 ", f"generations = {generations} ")
    text = text.replace("ready_every = 100", f"ready_every = {ready_every}")
    text = text.replace("checkpoint_every = 5", "checkpoint_every = 2").replace(
        "hidden = [128]", "hidden = [16]"
    )
    text = text.replace("population_size = 16", "population_size = 8")
    config = tmp_path / "c.toml"
    config.write_text(text)
    return config


def test_sigkill_mid_interval_then_neuroevo_resume_is_identical(tmp_path):
    config = _short_config(tmp_path, generations=7, ready_every=5)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cli = [sys.executable, "-m", "neuroevo"]
    done = subprocess.run(
        [*cli, "run", str(config), "--out", str(tmp_path / "full"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            "28",
            "run",
            str(config),
            "--out",
            str(tmp_path / "killed"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL
    run = RunDir(tmp_path / "killed")
    assert run.latest_checkpoint()[0] == 4  # killed at step 3 of generation 5: checkpoint 4 is the last
    assert not (run.path / "pbt.jsonl").exists()
    resumed = subprocess.run(
        [*cli, "resume", str(run.path), "--quiet"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    full = RunDir(tmp_path / "full")
    assert _deterministic(full.read_metrics()) == _deterministic(run.read_metrics())
    assert len(run.read_metrics()) == 7
    for name in ("pbt.jsonl", "best/schedule.json", "best/params.safetensors", "best/network.json"):
        assert (full.path / name).read_bytes() == (run.path / name).read_bytes(), name
    for name in ("pbt_schedule.png", "pbt_curves.png", "pbt_lineage.png"):
        assert (run.report / name).stat().st_size > 0


def test_best_member_exports_and_scores_like_validation(tmp_path):
    from neuroevo.runtime.export import export_best, load_best_module

    config = _short_config(tmp_path, generations=3, ready_every=20)
    cfg = load_config(config)
    built = build(cfg)
    result = evolve(built.strategy, built.phenotype, built.task, generations=3, run_dir=tmp_path / "r")
    module, spec = load_best_module(tmp_path / "r")
    task = built.task
    mean, std = task.data.input_stats  # the export takes raw features and standardises them itself
    with torch.no_grad():
        acc = (module(task.data.x_val * std + mean).argmax(-1) == task.data.y_val).float().mean()
    assert result.validation["val_accuracy"] == pytest.approx(result.best.fitness)
    assert (
        abs(float(acc) - result.best.fitness) <= 1.5 / task.data.y_val.numel()
    )  # float rounding: <= 1 digit
    assert spec["network"]["type"] == "trainable_mlp"
    schedule = json.loads((tmp_path / "r" / "best" / "schedule.json").read_text())
    assert len(schedule["schedule"]) == schedule["generation"] + 1
    assert {"lr", "weight_decay", "momentum"} <= set(schedule["schedule"][0])
    export_best(tmp_path / "r", tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").stat().st_size > 0


def test_digits_example_reaches_97_percent_validation_accuracy(tmp_path):
    """examples/digits_pbt.toml (P = 16, lr/weight decay/momentum), shortened to 10 ready intervals."""
    cfg = load_config(EXAMPLE, {"run": {"generations": 10}})
    assert cfg.strategy.population_size == 16 and set(cfg.strategy.space) == {
        "lr",
        "weight_decay",
        "momentum",
    }
    built = build(cfg)
    result = evolve(built.strategy, built.phenotype, built.task, generations=10)
    assert result.validation["val_accuracy"] >= 0.97
    assert sum(m["exploited"] for m in result.metrics) >= 4 * 9


def test_pbt_replay_trains_a_fresh_model_on_the_best_schedule(tmp_path):
    from neuroevo.cli import main
    from neuroevo.pbt_replay import describe, replay

    config = _short_config(tmp_path, generations=4, ready_every=100)
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    best = json.loads((tmp_path / "r" / "best" / "network.json").read_text())
    metrics = replay(tmp_path / "r")
    assert metrics["replay_steps"] == 100 * (
        json.loads((tmp_path / "r" / "best" / "schedule.json").read_text())["generation"] + 1
    )
    assert metrics["val_accuracy"] >= 0.9
    assert metrics["val_accuracy"] >= best["validation"]["val_accuracy"] - 0.05
    assert replay(tmp_path / "r") == metrics  # deterministic
    assert "val_accuracy" in describe(metrics)
    assert main(["pbt-replay", str(tmp_path / "r")]) == 0  # the same through the CLI
