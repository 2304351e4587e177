"""PBT replay: train a fresh model on the best member's hyperparameter schedule.

``replay(run)`` reads the run's ``config.toml`` and ``pbt.jsonl`` (one line per ready event),
finds the final best member there (the first ready event of the highest fitness, as
``PBT.best``), follows its lineage back to the first interval for its schedule (one entry per
ready interval, as in ``best/schedule.json``), builds the same task and network,
and trains ONE new member through the same intervals with those hyperparameters, without
exploit: the schedule alone, as Jaderberg et al. (2017) do to test whether the schedule (not
the copied weights) explains the result. The fresh member's weights and minibatches come from
``seed`` (default: the run's seed + 1, so the model is not any of the run's members).

Returns the task's validation metrics of the replayed model (``val_accuracy``, ...), plus
``replay_steps`` and ``replay_seed``. ``neuroevo pbt-replay RUN`` prints them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import torch

from neuroevo.config import build, validate_config
from neuroevo.core.errors import ConfigError
from neuroevo.strategies.pbt import HyperparamPopulation, SearchSpace
from neuroevo.strategies.pbt.strategy import PBT_RECORDS, best_event, lineage, read_events, schedule


def best_schedule(run: str | Path) -> list[dict[str, Any]]:
    """The schedule of ``run``'s best member's lineage, from its ``pbt.jsonl``."""
    run = Path(run)
    data = tomllib.loads((run / "config.toml").read_text())
    events = read_events(run / PBT_RECORDS)
    best = best_event(events)
    if best is None:
        raise ConfigError(f"{run / PBT_RECORDS}: no ready events; allowed: a `neuroevo run` of pbt")
    size = int(data["strategy"]["population_size"])
    return schedule(lineage(events, size, int(best["generation"]), int(best["member"])))


def replay(run: str | Path, *, seed: int | None = None) -> dict[str, float]:
    """Train a fresh member on ``run``'s best schedule; its validation metrics."""
    run = Path(run)
    if not (run / "config.toml").is_file() or not (run / PBT_RECORDS).is_file():
        raise ConfigError(f"{run}: no config.toml and pbt.jsonl; allowed: a `neuroevo run` of pbt")
    data = tomllib.loads((run / "config.toml").read_text())
    if data.get("strategy", {}).get("name") != "pbt":
        raise ConfigError(f"{run}: strategy.name = {data.get('strategy', {}).get('name')!r}; allowed: pbt")
    plan = best_schedule(run)
    data["run"]["seed"] = int(data["run"].get("seed", 0)) + 1 if seed is None else int(seed)
    data["strategy"]["population_size"] = 2  # built but unused: the replay has one member
    data["strategy"]["mode"] = "sync"  # one member, its intervals one after another
    cfg = validate_config(data)
    built = build(cfg)
    space = SearchSpace(cfg.strategy.space)
    steps = 0
    last: HyperparamPopulation | None = None
    for generation, entry in enumerate(plan):
        length = int(entry["to_step"]) - int(entry["from_step"])
        last = HyperparamPopulation(
            space, space.encode(entry).unsqueeze(0), torch.full((1,), -1), length, generation
        )
        built.task.evaluate(built.phenotype, last, generation)
        steps += length
    if last is None:
        raise ConfigError(f"{run / PBT_RECORDS}: empty schedule")
    metrics = dict(built.task.validate(built.phenotype, last.member(0)))
    metrics.update({"replay_steps": float(steps), "replay_seed": float(cfg.run.seed)})
    return metrics


def describe(metrics: dict[str, float]) -> str:
    lines = [
        f"replayed the best schedule on a fresh model (seed {int(metrics['replay_seed'])}, "
        f"{int(metrics['replay_steps'])} steps):"
    ]
    lines += [f"  {k}: {v:.6g}" for k, v in metrics.items() if not k.startswith("replay_")]
    return "\n".join(lines)
