"""Env steps per second for a population of CartPole policies, three ways, in one run.

    .venv/bin/python benchmarks/control_steps.py [--population 1024] [--threads 1] [--loop-members 64]

1. native: ``neuroevo.tasks.control.ControlTask`` (batched PyTorch CartPole, all members x
   episodes as one tensor program, finished members dropped from the batch);
2. gym.vector: ``neuroevo.tasks.gym.GymTask`` (Gymnasium's ``SyncVectorEnv`` over all members,
   one batched policy forward per step);
3. python loop: one ``gymnasium.make`` env per member, stepped in a Python loop with the
   member's 4-32-2 MLP evaluated in NumPy (a subset of ``--loop-members`` members; the rate
   is per step, so the subset does not bias it).

The policies are a solved CartPole controller (found first with OpenAI-ES on the native env,
a few seconds) plus small Gaussian perturbations, so episodes are long as in late training;
steps count only running episodes (``Fitness.steps``). Observation normalisation is off so
all three run exactly the same policies.
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np
import torch

from neuroevo.core import random as nrandom
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.strategies.openes import OpenES
from neuroevo.tasks.control import ControlTask
from neuroevo.tasks.gym import GymTask


def solved_center(net: PopulationMLP, seed: int) -> torch.Tensor:
    """A CartPole policy reaching 500 on its training episodes (OpenAI-ES, native env)."""
    task = ControlTask("CartPole-v1", episodes=10, normalize_obs=False, seed=seed)
    es = OpenES(net.num_params, 64, init=net.init_params, sigma=0.1, lr=0.05, seed=seed)
    for generation in range(200):
        fitness = task.evaluate(net, es.ask(), generation)
        es.tell(fitness)
        if float(fitness.values.max()) >= 500:
            break
    assert es.best is not None
    return es.best.params


def python_loop(net: PopulationMLP, pop: torch.Tensor, seeds: list[int]) -> int:
    """Step one Gymnasium env per (member, episode) in Python; returns env steps taken."""
    steps = 0
    for row in pop:
        (w1, b1), (w2, b2) = [(w[0].numpy(), b[0].numpy()) for w, b in net.layer_views(row)]
        for seed in seeds:
            env = gym.make("CartPole-v1")
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                hidden = np.tanh(obs @ w1 + b1)
                action = int(np.argmax(hidden @ w2 + b2))
                obs, _, terminated, truncated, _ = env.step(action)
                steps += 1
                done = terminated or truncated
            env.close()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--loop-members", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=0.02, help="perturbation of the solved policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="device of the native env (cpu | cuda)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = PopulationMLP([4, 32, 2], activation="tanh")
    center = solved_center(net, args.seed)
    noise = nrandom.population_normal(args.population, net.num_params, args.seed, 0, "bench")
    pop = center + args.sigma * noise

    results: list[tuple[str, int, float]] = []
    vec = GymTask("CartPole-v1", episodes=args.episodes, normalize_obs=False, seed=args.seed)
    seeds = vec.episode_seeds(args.episodes, 1, 0, "episodes")
    states = []
    for seed in seeds:  # the native env starts from the states Gymnasium resets to with these seeds
        env = gym.make("CartPole-v1")
        env.reset(seed=seed)
        states.append(torch.tensor(env.unwrapped.state))
    native = ControlTask("CartPole-v1", episodes=args.episodes, normalize_obs=False, device=args.device)
    native_net = PopulationMLP([4, 32, 2], activation="tanh", device=args.device)
    native.rollout(native_net, pop[:8].to(args.device), torch.stack(states))  # warm-up
    t0 = time.perf_counter()
    run_native = native.rollout(native_net, pop.to(args.device), torch.stack(states))
    if args.device != "cpu":
        torch.cuda.synchronize()
    results.append((f"native batched ({args.device})", run_native.steps, time.perf_counter() - t0))

    vec.rollout(net, pop[:8], seeds)  # warm-up (builds a small vector env)
    t0 = time.perf_counter()
    run_vec = vec.rollout(net, pop, seeds)
    results.append(("gymnasium.vector SyncVectorEnv", run_vec.steps, time.perf_counter() - t0))
    vec.close()

    sub = pop[: args.loop_members]
    t0 = time.perf_counter()
    loop_steps = python_loop(net, sub, seeds)
    results.append((f"python loop of gym envs ({len(sub)} members)", loop_steps, time.perf_counter() - t0))

    print(f"CartPole-v1, P = {args.population} policies (4-32-2 tanh MLP), E = {args.episodes} episode(s)")
    print(
        f"torch {torch.__version__}, gymnasium {gym.__version__}, threads {torch.get_num_threads()}, ", end=""
    )
    print(f"{platform.processor() or platform.machine()}")
    print(f"mean episode length: native {run_native.lengths.double().mean():.1f}, ", end="")
    print(f"gym.vector {run_vec.lengths.double().mean():.1f}")
    base = results[-1][1] / results[-1][2]
    print(f"{'method':44s} {'env steps':>10s} {'seconds':>9s} {'steps/s':>12s} {'vs loop':>8s}")
    for name, steps, seconds in results:
        rate = steps / seconds
        print(f"{name:44s} {steps:10d} {seconds:9.2f} {rate:12,.0f} {rate / base:7.1f}x")


if __name__ == "__main__":
    main()
