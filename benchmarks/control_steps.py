"""Env steps per second of a population of MLP policies: our rollout paths against gymnax, in one run.

    .bench-venv/bin/python benchmarks/control_steps.py [--population 1024] [--episodes 4]
        [--envs CartPole-v1,Acrobot-v1,MountainCar-v0,Pendulum-v1] [--hidden 32] [--gym-baselines]

Run with ``PYTHONPATH=src`` in the benchmark environment (``bash benchmarks/setup_env.sh``) to
include gymnax; without jax/gymnax that row is skipped. For every env, P policies (an
[obs, hidden, out] tanh MLP) run E episodes each (P x E env rows), one torch thread:

1. plain: ``ControlTask.plain_rollout``, one eager step at a time (~60 small kernels per step);
2. fused eager: ``ControlTask.fused_rollout(compiled=False)``, blocks of ``BLOCK_STEPS`` steps
   with one host sync per block, bit-identical to plain;
3. fused compiled: ``fused_rollout(compiled=True)``: the block as an AOTInductor package (see
   ``neuroevo.tasks.control.fused``). Its first call, which compiles (cold) or loads (cached on
   disk) the package, is reported separately; "steps/s" is after that first call and "incl.
   first" over the first call plus one timed rollout;
4. gymnax 1.0 (jax, one CPU thread by default): ``jit(vmap(rollout))`` with ``lax.scan`` over the
   env's step limit, the same policies; the first call (JIT) is reported the same way.

Steps count running episodes only (a masked step of a finished episode is not a step). CartPole
policies are a solved controller (OpenAI-ES, native env, a few seconds) plus N(0, sigma^2)
perturbations, so episodes are long as in late training; the other envs use freshly initialised
policies (their episodes mostly run to the step limit). Observation normalisation is off so all
paths run exactly the same policies. ``--gym-baselines`` adds, for CartPole, Gymnasium's
``SyncVectorEnv`` (``GymTask``) and a Python loop of ``gymnasium.make`` envs (a subset of
``--loop-members`` members, NumPy MLP).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neuroevo.core import random as nrandom  # noqa: E402
from neuroevo.nn.mlp import PopulationMLP  # noqa: E402
from neuroevo.strategies.openes import OpenES  # noqa: E402
from neuroevo.tasks.control import ControlTask  # noqa: E402

ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1")


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


def population(env_id: str, net: PopulationMLP, args: argparse.Namespace) -> torch.Tensor:
    if env_id == "CartPole-v1":
        center = solved_center(net, args.seed)
        noise = nrandom.population_normal(args.population, net.num_params, args.seed, 0, "bench")
        return center + args.sigma * noise
    gens = [nrandom.member_generator(args.seed, 0, i, "bench") for i in range(args.population)]
    return torch.stack([net.init_params(g) for g in gens])


def timed(fn, repeats: int) -> tuple[object, float]:
    """The result and the best wall time of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def gymnax_rollout(env_id: str, net: PopulationMLP, pop: torch.Tensor, episodes: int, seed: int):
    """A function running gymnax's env under the same MLPs: ``() -> (steps, returns)``; None if absent."""
    try:
        import sys
        import types

        try:
            import seaborn  # noqa: F401
        except ImportError:
            sys.modules["seaborn"] = types.ModuleType("seaborn")  # gymnax uses it only to render Pong
        import gymnax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    env, params = gymnax.make(env_id)
    steps_limit = int(params.max_steps_in_episode)
    layers = [(jnp.asarray(w.numpy()), jnp.asarray(b.numpy())) for w, b in net.layer_views(pop)]
    discrete = env_id != "Pendulum-v1"

    def policy(layer_params, obs):
        h = obs
        for i, (w, b) in enumerate(layer_params):
            h = h @ w + b
            if i < len(layer_params) - 1:
                h = jnp.tanh(h)
        return jnp.argmax(h) if discrete else 2.0 * jnp.tanh(h)  # Pendulum: [-2, 2]

    def episode(layer_params, key):
        obs, state = env.reset(key, params)

        def step(carry, _):
            obs, state, key, done, ret, length = carry
            key, sk = jax.random.split(key)
            obs, state, reward, terminated, _, _ = env.step(sk, state, policy(layer_params, obs), params)
            running = 1.0 - done
            ret, length = ret + reward * running, length + running
            done = jnp.maximum(done, terminated.astype(jnp.float32))
            return (obs, state, key, done, ret, length), None

        init = (obs, state, key, jnp.float32(0.0), jnp.float32(0.0), jnp.float32(0.0))
        carry, _ = jax.lax.scan(step, init, None, length=steps_limit)  # truncation at the limit
        return carry[-2], carry[-1]

    keys = jax.random.split(jax.random.key(seed), episodes)
    per_member = jax.vmap(episode, in_axes=(None, 0))
    run = jax.jit(jax.vmap(per_member, in_axes=(0, None)))

    def call():
        returns, lengths = run(layers, keys)
        return int(np.asarray(lengths).sum()), returns

    return call


def gym_baselines(net: PopulationMLP, pop: torch.Tensor, args: argparse.Namespace) -> list[tuple]:
    """Gymnasium's SyncVectorEnv and a Python loop of envs, CartPole only."""
    import gymnasium as gym

    from neuroevo.tasks.gym import GymTask

    vec = GymTask("CartPole-v1", episodes=args.episodes, normalize_obs=False, seed=args.seed)
    seeds = vec.episode_seeds(args.episodes, 1, 0, "episodes")
    vec.rollout(net, pop[:8], seeds)  # warm-up (builds a small vector env)
    run_vec, seconds = timed(lambda: vec.rollout(net, pop, seeds), 1)
    vec.close()
    rows = [("gymnasium.vector SyncVectorEnv", run_vec.steps, seconds, None)]
    sub = pop[: args.loop_members]
    t0 = time.perf_counter()
    steps = 0
    for row in sub:
        (w1, b1), (w2, b2) = [(w[0].numpy(), b[0].numpy()) for w, b in net.layer_views(row)]
        for seed in seeds:
            env = gym.make("CartPole-v1")
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                action = int(np.argmax(np.tanh(obs @ w1 + b1) @ w2 + b2))
                obs, _, terminated, truncated, _ = env.step(action)
                steps += 1
                done = terminated or truncated
    rows.append((f"python loop of gym envs ({len(sub)} members)", steps, time.perf_counter() - t0, None))
    return rows


def bench_env(env_id: str, args: argparse.Namespace) -> list[tuple]:
    task = ControlTask(env_id, episodes=args.episodes, normalize_obs=False, seed=args.seed)
    net = PopulationMLP([task.in_features, args.hidden, task.out_features], activation="tanh")
    pop = population(env_id, net, args)
    init = task.initial_states(args.episodes, 1, 0, "episodes")
    rows: list[tuple] = []
    task.plain_rollout(net, pop[:8], init)  # warm-up
    res, seconds = timed(lambda: task.plain_rollout(net, pop, init), args.repeats)
    rows.append(("plain eager rollout", res.steps, seconds, None))
    res, seconds = timed(lambda: task.fused_rollout(net, pop, init, compiled=False), args.repeats)
    rows.append(("fused eager", res.steps, seconds, None))
    t0 = time.perf_counter()
    task.fused_rollout(net, pop, init, compiled=True)
    first = time.perf_counter() - t0
    res, seconds = timed(lambda: task.fused_rollout(net, pop, init, compiled=True), args.repeats)
    rows.append(("fused compiled (AOTInductor)", res.steps, seconds, first))
    call = gymnax_rollout(env_id, net, pop, args.episodes, args.seed)
    if call is not None:
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        (steps, _), seconds = timed(call, args.repeats)
        rows.append(("gymnax 1.0 (jit, vmap, scan)", steps, seconds, first))
    else:
        rows.append(("gymnax: not installed (run in .bench-venv)", 0, float("nan"), None))
    if args.gym_baselines and env_id == "CartPole-v1":
        rows.extend(gym_baselines(net, pop, args))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rollouts per path (best is shown)")
    parser.add_argument("--gym-baselines", action="store_true", help="CartPole: SyncVectorEnv, python loop")
    parser.add_argument("--loop-members", type=int, default=64)
    parser.add_argument(
        "--sigma", type=float, default=0.02, help="perturbation of the solved CartPole policy"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = args.population * args.episodes
    print(f"P = {args.population} policies x E = {args.episodes} episodes = {rows} rows")
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {cpu}")
    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")
    for env_id in args.envs.split(","):
        rows = bench_env(env_id, args)
        fused = next(r for r in rows if r[0].startswith("fused compiled"))
        print(f"\n{env_id}, [obs, {args.hidden}, out] tanh MLP")
        print(
            f"{'method':44s} {'env steps':>10s} {'seconds':>8s} {'steps/s':>12s} {'1st call s':>10s} "
            f"{'incl. 1st':>12s} {'fused x':>8s}"
        )
        for name, steps, seconds, first in rows:
            rate = steps / seconds if seconds == seconds and seconds > 0 else float("nan")
            with_first = f"{steps / (seconds + first):12,.0f}" if first is not None else f"{'':12s}"
            first_s = f"{first:10.2f}" if first is not None else f"{'':10s}"
            ratio = (fused[1] / fused[2]) / rate if rate == rate and rate > 0 else float("nan")
            print(f"{name:44s} {steps:10d} {seconds:8.3f} {rate:12,.0f} {first_s} {with_first} {ratio:7.1f}x")


if __name__ == "__main__":
    main()
