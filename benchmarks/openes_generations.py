"""Generations to solve CartPole-v1 with OpenES: neuroevo vs evosax, over many seeds.

    .bench-venv/bin/python benchmarks/openes_generations.py [--seeds 20]

Why: with 5 seeds, ``cartpole_solve.py`` gave neuroevo a median of 40 generations and
evosax + gymnax 20 with nominally the same settings (sigma 0.1, Adam lr 0.05, population
100, centred ranks, mirrored sampling, Xavier-uniform init). Generations to solve vary by
more than 10x across seeds, so 5 seeds cannot tell the two apart. This script counts
generations (not time) for both libraries, and for neuroevo with and without observation
normalisation (evosax's rollout has none), on the same seeds, and prints the medians.
A seed that does not solve within 200 generations counts as 999.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cartpole_solve  # noqa: E402

MAX_GENERATIONS = 200
FAILED = 999


def neuroevo_generations(seed: int, normalize_obs: bool) -> int:
    import torch

    from neuroevo.nn.mlp import PopulationMLP
    from neuroevo.strategies.openes import OpenES
    from neuroevo.tasks.control import ControlTask

    torch.set_num_threads(1)
    task = ControlTask("CartPole-v1", episodes=1, seed=seed, normalize_obs=normalize_obs)
    net = PopulationMLP([4, 16, 2], activation="tanh")
    es = OpenES(net.num_params, cartpole_solve.POPSIZE, init=net.init_params, sigma=0.1, lr=0.05, seed=seed)
    for generation in range(MAX_GENERATIONS):
        fitness = task.evaluate(net, es.ask(), generation)
        es.tell(fitness)
        if float(fitness.values.mean()) >= cartpole_solve.TARGET:
            return generation + 1
    return FAILED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    seeds = range(args.seeds)
    rows = {
        "neuroevo OpenES (obs normalisation, default)": [neuroevo_generations(s, True) for s in seeds],
        "neuroevo OpenES (no obs normalisation)": [neuroevo_generations(s, False) for s in seeds],
    }
    evosax = [cartpole_solve.solve_evosax(s)[0] for s in seeds]
    rows["evosax 0.3.2 Open_ES + gymnax"] = [FAILED if g < 0 else g for g in evosax]
    print(f"| contender | median generations | solved | per seed (seeds 0-{args.seeds - 1}) |")
    print("|---|---:|---:|---|")
    for name, gens in rows.items():
        solved = sum(g != FAILED for g in gens)
        print(f"| {name} | {statistics.median(gens):g} | {solved}/{len(gens)} | {' '.join(map(str, gens))} |")


if __name__ == "__main__":
    main()
