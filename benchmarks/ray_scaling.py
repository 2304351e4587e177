"""Generations per second: local executor vs Ray with 1 and 2 workers, and EvoTorch's Ray actors.

    .bench-venv/bin/python benchmarks/ray_scaling.py [--env auto] [--generations 6] [--population 128]
    .bench-venv/bin/python benchmarks/ray_scaling.py --smoke      # a few seconds: checks it runs

The heavy task is the heaviest CPU-bound Gymnasium env that is installed (``--env auto``):
Hopper-v5 (``pip install 'neuroevo[mujoco]'``), else BipedalWalker-v3 (box2d), else
Acrobot-v1 through Gymnasium (NumPy RK4 physics stepped in Python). Every contender runs
OpenES on a 64-64 tanh MLP, one episode per member per generation, one torch thread per
process, on a private Ray instance started by the script (never a cluster someone else runs).

Printed per contender: generations/s (after one warm-up generation that starts the actors),
and for Ray the payload bytes per generation out (population shards, task state) and in
(fitness, steps, per-member statistics). Then the per-generation overhead of the Ray
executor on a light task (CartPole on the native batched env, where evaluation costs
little): Ray 2 workers minus local seconds per generation. EvoTorch 0.6 (``GymNE`` with
``num_actors=2``, its ``SNES``) runs the same env, network and population when installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from typing import Any

HEAVY = ("Hopper-v5", "BipedalWalker-v3", "Acrobot-v1")


def pick_env(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if importlib.util.find_spec("mujoco") is not None:
        return "Hopper-v5"
    if importlib.util.find_spec("Box2D") is not None:
        return "BipedalWalker-v3"
    return "Acrobot-v1"


def build(env: str, population: int, native: bool = False, seed: int = 0) -> tuple[Any, Any, Any]:
    import torch

    from neuroevo.nn.mlp import PopulationMLP
    from neuroevo.strategies.openes import OpenES
    from neuroevo.tasks.control import ControlTask
    from neuroevo.tasks.gym import GymTask

    torch.set_num_threads(1)
    if native:
        task: Any = ControlTask(env, episodes=1, eval_episodes=1, seed=seed)
    else:
        task = GymTask(env, episodes=1, eval_episodes=1, seed=seed)
    net = PopulationMLP([task.in_features, 64, 64, task.out_features], activation="tanh")
    es = OpenES(net.num_params, population, init=net.init_params, sigma=0.02, lr=0.01, seed=seed)
    return es, net, task


def measure(env: str, population: int, generations: int, workers: int, native: bool = False) -> dict:
    """Seconds per generation (after a warm-up generation) with the local executor (workers = 0)
    or a RayExecutor with ``workers`` actors on a private Ray instance."""
    from neuroevo.runtime import evolve
    from neuroevo.runtime.ray_executor import RayExecutor

    es, net, task = build(env, population, native)
    executor = RayExecutor(None, workers=workers) if workers else None
    try:
        evolve(es, net, task, generations=1, executor=executor, validate_every=0)  # warm-up
        t0 = time.perf_counter()
        result = evolve(es, net, task, generations=1 + generations, executor=executor, validate_every=0)
        seconds = (time.perf_counter() - t0) / generations
    finally:
        if executor is not None:
            executor.close()
    last = result.metrics[-1]
    return {
        "s_per_gen": seconds,
        "gens_per_s": 1.0 / seconds,
        "steps_per_gen": last["steps"] / generations,
        "bytes_out": last.get("bytes_out", 0.0),
        "bytes_in": last.get("bytes_in", 0.0),
    }


def measure_evotorch(env: str, population: int, generations: int, actors: int) -> dict | None:
    try:
        from evotorch.algorithms import SNES
        from evotorch.neuroevolution import GymNE
    except ImportError:
        return None
    import torch

    torch.set_num_threads(1)
    problem = GymNE(
        env=env,
        network="Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)",
        observation_normalization=True,
        num_actors=actors,
        num_episodes=1,
    )
    searcher = SNES(problem, popsize=population, stdev_init=0.02)
    searcher.step()  # warm-up: starts the actors
    t0 = time.perf_counter()
    for _ in range(generations):
        searcher.step()
    seconds = (time.perf_counter() - t0) / generations
    import ray

    if ray.is_initialized():
        ray.shutdown()
    return {"s_per_gen": seconds, "gens_per_s": 1.0 / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    heavy = ", ".join(HEAVY)
    parser.add_argument("--env", default="auto", help=f"auto (first installed of {heavy}) or an id")
    parser.add_argument("--generations", type=int, default=6, help="timed generations per contender")
    parser.add_argument("--population", type=int, default=128, help="members (shards are multiples of 64)")
    parser.add_argument("--light-population", type=int, default=256, help="members on the light task")
    parser.add_argument("--skip-evotorch", action="store_true", help="do not run EvoTorch")
    parser.add_argument("--smoke", action="store_true", help="2 generations, small settings: checks it runs")
    args = parser.parse_args()
    if args.smoke:
        args.generations, args.light_population = 2, 128
    env = pick_env(args.env)
    print(f"heavy task: {env} via Gymnasium, OpenES, MLP 64-64, population {args.population}, 1 episode")
    rows: dict[str, dict] = {}
    for name, workers in (("local", 0), ("ray 1 worker", 1), ("ray 2 workers", 2)):
        rows[name] = measure(env, args.population, args.generations, workers)
        r = rows[name]
        wire = f"  out {r['bytes_out'] / 1e3:8.1f} kB  in {r['bytes_in'] / 1e3:6.1f} kB" if workers else ""
        print(f"  {name:16s} {r['gens_per_s']:7.3f} gens/s  {r['s_per_gen']:7.3f} s/gen{wire}")
    speedup = rows["ray 2 workers"]["gens_per_s"] / rows["ray 1 worker"]["gens_per_s"]
    print(f"  speed-up of 2 workers over 1: {speedup:.2f}x (target >= 1.8x on 2 idle cores)")
    if not args.skip_evotorch:
        evo = measure_evotorch(env, args.population, args.generations, actors=2)
        if evo is None:
            print("  evotorch: not installed")
        else:
            ratio = rows["ray 2 workers"]["gens_per_s"] / evo["gens_per_s"]
            print(f"  {'evotorch 2 actors':16s} {evo['gens_per_s']:7.3f} gens/s  (neuroevo is {ratio:.2f}x)")
    light = "CartPole-v1"
    print(f"light task: {light} (native batched env), population {args.light_population}")
    local = measure(light, args.light_population, args.generations, 0, native=True)
    remote = measure(light, args.light_population, args.generations, 2, native=True)
    overhead = remote["s_per_gen"] - local["s_per_gen"]
    ms_local, ms_remote = local["s_per_gen"] * 1e3, remote["s_per_gen"] * 1e3
    print(
        f"  local {ms_local:.1f} ms/gen, ray 2 workers {ms_remote:.1f} ms/gen: "
        f"overhead {overhead * 1e3:.1f} ms per generation; "
        f"out {remote['bytes_out'] / 1e3:.1f} kB, in {remote['bytes_in'] / 1e3:.1f} kB per generation"
    )


if __name__ == "__main__":
    main()
