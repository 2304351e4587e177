"""neuroevo's PBT against Ray Tune's ``PopulationBasedTraining`` on digits, in one script run.

    PYTHONPATH=src /work/main/.bench-venv/bin/python benchmarks/pbt_vs_ray_tune.py            # 3 seeds
    PYTHONPATH=src /work/main/.bench-venv/bin/python benchmarks/pbt_vs_ray_tune.py --quick    # smoke test

``ray[tune]`` lives only in the benchmark environment (``.bench-venv``), never in the project's.

Both arms run the same problem, that of ``examples/digits_pbt.toml``:

- task: scikit-learn digits, the project's split and standardisation (``pbt_supervised``);
  its validation split is cut in two fixed halves as in ``pbt_vs_random.py``: ``val`` (the
  fitness every exploit selects on) and ``test`` (reported only);
- model: MLP 64-128-10, ReLU, PyTorch's default ``nn.Linear`` init; SGD with momentum,
  batch 64 drawn uniformly with replacement;
- space: lr log-uniform [1e-3, 0.5], weight decay log-uniform [1e-6, 1e-2], momentum
  uniform [0, 0.99];
- population 16, budget 20 ready intervals of 100 steps per member (32,000 member-steps);
- exploit: the bottom 25% copy a top-25% member (Ray: ``quantile_fraction = 0.25``);
  explore: multiply by 0.8 or 1.2, or resample from the prior with probability 0.25.

neuroevo: ``evolve`` on the example config with a run folder (metrics, checkpoints every 5
generations, ``best/``), one process, one torch thread, the 16 members stacked.

Ray Tune: a class ``Trainable`` per member (one ``step()`` = one ready interval of
``ready_every`` optimiser steps, reported once; checkpoints with
``save_checkpoint``/``load_checkpoint``, ``reset_config`` so actors are reused), run by
``Tuner`` with ``PopulationBasedTraining(time_attr="training_iteration",
perturbation_interval=1, synch=True)``: the ready interval is one reported iteration, as ours
is one generation, and ``synch=True`` is our synchronous (generational) mode. A checkpoint is
written at every ready point (``CheckpointConfig(checkpoint_frequency=1)``, so
``checkpoint_frequency == perturbation_interval``) and the run stops at
``training_iteration = generations``, so every trial trains exactly ``generations`` intervals:
the same ``P x generations x ready_every`` optimiser steps as neuroevo (the script counts the
intervals Ray trained and prints both totals). Ray's default, asynchronous mode does not keep
that budget here: with 16 trials on 2 CPUs every result pauses its trial, and an exploited
trial resumes from its parent's checkpoint (the parent's ``training_iteration``), so trials
train intervals again; the previous version of this script ran it so and logged 19,330
exploits in one unfinished seed. Ray runs on a local instance started with
``ray.init(num_cpus=2, include_dashboard=False)`` on 127.0.0.1 (two trials at a time, one torch
thread each) and shut down by its handle (``ray.shutdown()``) at the end. Ray's own defaults
otherwise (loggers, storage in a temporary folder).

For each arm and seed: wall time (neuroevo: ``evolve``; Ray: ``Tuner.fit``, with ``ray.init``
reported apart), final val and test accuracy of the final member with the best val accuracy.
Printed: medians over the seeds and the ratios. Also how often perturbed values left the
space's bounds: Ray's from ``pbt_global.txt`` (one line per exploit: the new config) and from
the hyperparameters each trial reported for every interval it trained; neuroevo's from its
ready events in ``RUN/pbt.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pbt_vs_random import EXAMPLE, _split_val  # noqa: E402

from neuroevo.config import build, load_config  # noqa: E402
from neuroevo.runtime import evolve  # noqa: E402

#: the space of examples/digits_pbt.toml: name -> (low, high, log)
SPACE: dict[str, tuple[float, float, bool]] = {
    "lr": (1e-3, 0.5, True),
    "weight_decay": (1e-6, 1e-2, True),
    "momentum": (0.0, 0.99, False),
}


def out_of_bounds(config: dict[str, Any]) -> list[str]:
    """The names whose value in ``config`` lies outside the space's bounds."""
    return [k for k, (lo, hi, _) in SPACE.items() if k in config and not lo <= float(config[k]) <= hi]


# -- neuroevo --------------------------------------------------------------------------------
def run_neuroevo(seed: int, size: int, ready: int, generations: int, folder: Path) -> dict[str, Any]:
    overrides = {
        "run": {"seed": seed, "generations": generations},
        "strategy": {"population_size": size, "ready_every": ready},
    }
    cfg = load_config(EXAMPLE, overrides)
    built = build(cfg)
    x_test, y_test = _split_val(built.task, 1000 + seed)
    t0 = time.perf_counter()
    result = evolve(
        built.strategy,
        built.phenotype,
        built.task,
        generations=generations,
        run_dir=folder / f"neuroevo_{seed}",
        checkpoint_every=cfg.run.checkpoint_every,
    )
    seconds = time.perf_counter() - t0
    task, net = built.task, built.phenotype
    with torch.no_grad():
        val = task.data.score(net.forward_stacked(task.weights, task.data.x_val), task.data.y_val, "accuracy")
        test = task.data.score(net.forward_stacked(task.weights, x_test), y_test, "accuracy")
    best = int(torch.argmax(val))
    events = [json.loads(line) for line in (result.run_dir / "pbt.jsonl").read_text().splitlines()]
    return {
        "seconds": seconds,
        "val": float(val[best]),
        "test": float(test[best]),
        "intervals": len(events),
        "intervals_oob": sum(bool(out_of_bounds(e["old"])) for e in events),
        "member_steps": int(result.steps),  # optimiser steps trained, summed over members
    }


# -- Ray Tune ----------------------------------------------------------------------------------
def digits_arrays(seed: int) -> dict[str, np.ndarray]:
    """The project's digits split (train, val half, test half), as numpy for Ray's object store."""
    cfg = load_config(EXAMPLE, {"run": {"seed": seed}})
    task = build(cfg).task
    x_test, y_test = _split_val(task, 1000 + seed)
    d = task.data
    pairs = {"x": d.x_train, "y": d.y_train, "xv": d.x_val, "yv": d.y_val, "xt": x_test, "yt": y_test}
    return {k: v.cpu().numpy() for k, v in pairs.items()}


def make_trainable(data: dict[str, np.ndarray], ready: int, batch: int, seed: int):
    from ray import tune

    class DigitsMLP(tune.Trainable):
        """One member: MLP 64-128-10 + SGD; one ``step()`` trains ``ready`` steps, then scores."""

        def setup(self, config: dict[str, Any]) -> None:
            torch.set_num_threads(1)
            t = {k: torch.as_tensor(v) for k, v in data.items()}
            self.x, self.y, self.xv, self.yv, self.xt, self.yt = (
                t[k] for k in ("x", "y", "xv", "yv", "xt", "yt")
            )
            member_seed = zlib.crc32(f"{seed}/{self.trial_id}".encode())
            torch.manual_seed(member_seed)
            self.model = nn.Sequential(nn.Linear(self.x.shape[1], 128), nn.ReLU(), nn.Linear(128, 10))
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
            self.gen = torch.Generator().manual_seed(member_seed)
            self.steps = 0
            self.reset_config(config)

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            for group in self.opt.param_groups:
                for k in SPACE:
                    group[k] = float(new_config[k])
            self.config = dict(new_config)
            return True

        def step(self) -> dict[str, Any]:
            used = {k: float(self.opt.param_groups[0][k]) for k in SPACE}
            self.model.train()
            for _ in range(ready):
                idx = torch.randint(self.x.shape[0], (batch,), generator=self.gen)
                self.opt.zero_grad()
                nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx]).backward()
                self.opt.step()
            self.steps += ready
            with torch.no_grad():
                val = (self.model(self.xv).argmax(-1) == self.yv).double().mean().item()
                test = (self.model(self.xt).argmax(-1) == self.yt).double().mean().item()
            return {"val_accuracy": val, "test_accuracy": test, "member_steps": self.steps, **used}

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            state = {
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(),
                "steps": self.steps,
            }
            torch.save(state, Path(checkpoint_dir) / "member.pt")

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            state = torch.load(Path(checkpoint_dir) / "member.pt", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.gen.set_state(state["gen"])
            self.steps = state["steps"]
            self.reset_config(self.config)  # the perturbed config, not the parent's

    return DigitsMLP


def run_ray(seed: int, size: int, ready: int, generations: int, folder: Path) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    random.seed(seed)  # Ray's PBT explores with the driver's `random`
    np.random.seed(seed)
    lo_hi = {
        k: (tune.loguniform(lo, hi) if log else tune.uniform(lo, hi)) for k, (lo, hi, log) in SPACE.items()
    }
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=1,
        hyperparam_mutations=dict(lo_hi),
        quantile_fraction=0.25,
        resample_probability=0.25,
        perturbation_factors=(1.2, 0.8),
        synch=True,
    )
    trainable = make_trainable(digits_arrays(seed), ready, 64, seed)

    class Intervals(tune.Callback):
        """Counts every interval a trial reports, and those trained with out-of-bounds values."""

        intervals = oob = 0

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            self.intervals += 1
            self.oob += bool(out_of_bounds(result))

    counter = Intervals()
    tuner = tune.Tuner(
        trainable,
        param_space=dict(lo_hi),
        tune_config=tune.TuneConfig(
            metric="val_accuracy",
            mode="max",
            scheduler=scheduler,
            num_samples=size,
            reuse_actors=True,
            search_alg=BasicVariantGenerator(random_state=seed),
        ),
        run_config=tune.RunConfig(
            name=f"ray_{seed}",
            storage_path=str(folder),
            stop={"training_iteration": generations},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
            verbose=0,
            callbacks=[counter],
        ),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - t0
    finals = [r.metrics for r in grid if r.metrics and "val_accuracy" in r.metrics]
    errors = sum(r.error is not None for r in grid)
    best = max(finals, key=lambda m: m["val_accuracy"])
    intervals, oob = counter.intervals, counter.oob
    exploits = exploits_oob = 0
    per_key = dict.fromkeys(SPACE, 0)
    log = Path(grid.experiment_path) / "pbt_global.txt"
    if log.is_file():
        for raw in log.read_text().splitlines():
            new_config = json.loads(raw)[5]
            bad = out_of_bounds(new_config)
            exploits += 1
            exploits_oob += bool(bad)
            for k in bad:
                per_key[k] += 1
    return {
        "seconds": seconds,
        "member_steps": intervals * ready,
        "val": float(best["val_accuracy"]),
        "test": float(best["test_accuracy"]),
        "trials": len(finals),
        "errors": errors,
        "intervals": intervals,
        "intervals_oob": oob,
        "exploits": exploits,
        "exploits_oob": exploits_oob,
        "oob_per_key": per_key,
        "log_found": log.is_file(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--ready-every", type=int, default=100)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 seed, P = 4, 4 x 10 steps")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.population, args.ready_every, args.generations = 1, 4, 10, 4
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    shape = (args.population, args.ready_every, args.generations)
    budget = args.population * args.generations * args.ready_every
    with tempfile.TemporaryDirectory(prefix="pbt_vs_ray_") as tmp:
        folder = Path(tmp)
        ne = {}
        for seed in seeds:
            ne[seed] = run_neuroevo(seed, *shape, folder)
            r = ne[seed]
            print(
                f"neuroevo seed {seed}: {r['seconds']:.1f} s, val {r['val']:.4f}, test {r['test']:.4f}",
                flush=True,
            )

        import ray

        t0 = time.perf_counter()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
        init_seconds = time.perf_counter() - t0
        print(f"ray.init: {init_seconds:.1f} s (ray {ray.__version__})", flush=True)
        rt = {}
        try:
            for seed in seeds:
                rt[seed] = run_ray(seed, *shape, folder)
                r = rt[seed]
                print(
                    f"ray tune seed {seed}: {r['seconds']:.1f} s, val {r['val']:.4f}, test {r['test']:.4f}, "
                    f"{r['trials']} trials ({r['errors']} errors), exploits {r['exploits']}, "
                    f"exploits out of bounds {r['exploits_oob']} {r['oob_per_key']}, "
                    f"intervals trained out of bounds {r['intervals_oob']}/{r['intervals']}, "
                    f"member-steps {r['member_steps']} (budget {budget})"
                    + ("" if r["log_found"] else " (no pbt_global.txt)"),
                    flush=True,
                )
        finally:
            ray.shutdown()

    def med(arms: dict[int, dict[str, Any]], key: str) -> float:
        return statistics.median(arms[s][key] for s in seeds)

    n_sec, r_sec = med(ne, "seconds"), med(rt, "seconds")
    print(f"\nP = {args.population}, {args.generations} x {args.ready_every} steps, seeds {seeds}")
    print("| arm | wall s (median) | val acc (median) | test acc (median) | intervals out of bounds |")
    print("|---|---:|---:|---:|---:|")
    for name, arms in (("neuroevo PBT", ne), ("Ray Tune PBT", rt)):
        oob = sum(arms[s]["intervals_oob"] for s in seeds)
        total = sum(arms[s]["intervals"] for s in seeds)
        row = f"{med(arms, 'seconds'):.1f} | {med(arms, 'val'):.4f} | {med(arms, 'test'):.4f}"
        print(f"| {name} | {row} | {oob}/{total} |")
    ratio = r_sec / n_sec if n_sec > 0 else math.inf
    print(f"wall time: Ray Tune / neuroevo = {ratio:.1f}x (plus {init_seconds:.1f} s of ray.init)")
    print(
        f"val accuracy: neuroevo - Ray Tune = {med(ne, 'val') - med(rt, 'val'):+.4f}, "
        f"test: {med(ne, 'test') - med(rt, 'test'):+.4f}"
    )
    ex = sum(rt[s]["exploits"] for s in seeds)
    ex_oob = sum(rt[s]["exploits_oob"] for s in seeds)
    print(f"Ray Tune exploits whose new config left the bounds: {ex_oob}/{ex} (pbt_global.txt)")
    steps = {name: [arms[s]["member_steps"] for s in seeds] for name, arms in (("neuroevo", ne), ("ray", rt))}
    print(
        f"optimiser member-steps per seed: neuroevo {steps['neuroevo']}, "
        f"Ray Tune {steps['ray']}, budget {budget}"
    )


if __name__ == "__main__":
    main()
