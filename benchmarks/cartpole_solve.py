"""Wall time to solve CartPole-v1: neuroevo OpenES vs EvoTorch GymNE + PGPE vs evosax + gymnax.

    PYTHONPATH=src .bench-venv/bin/python benchmarks/cartpole_solve.py [--seeds 5]
        [--only neuroevo,neuroevo-compiled,evosax,evotorch]

Run in the benchmark environment (``bash benchmarks/setup_env.sh``). Every contender uses a
4-16-2 tanh MLP, population 100 and one episode per member per generation; CartPole counts as
solved in the first generation whose POPULATION MEAN return is >= 475 (the criterion of
``shared/PEER_BASELINES.md``). Wall time runs from building the problem to that generation
and includes JIT compilation (evosax, inductor) and env construction. Median over seeds; also
the first seed's wall time (compilation) and the median time of one generation after the first.

- neuroevo: ``ControlTask("CartPole-v1")`` (batched PyTorch env, observation normalisation)
  with ``OpenES`` (sigma 0.1, Adam lr 0.05), one torch thread; ``compile = "auto"`` runs the
  fused rollout eager at P x E = 100; ``neuroevo-compiled`` sets ``compile = true`` (an
  AOTInductor package, compiled on first use and cached on disk, ``neuroevo.tasks.control.fused``);
- EvoTorch 0.6: ``GymNE`` (observation normalisation, no Ray actors) with ``PGPE`` using the
  ClipUp settings of EvoTorch's ``rl.py`` example (max_speed 0.15, center lr 0.1125,
  radius_init 2.25, stdev lr 0.1, stdev_max_change 0.2);
- evosax 0.3 + gymnax 1.0: ``Open_ES`` (std 0.1, Adam lr 0.05), ``vmap`` over members and
  ``lax.scan`` over 500 steps, jitted. gymnax imports seaborn only to render Pong; a stub
  module stands in for it when seaborn is not installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types

MAX_GENERATIONS = 200
POPSIZE = 100
TARGET = 475.0


def solve_neuroevo(seed: int, compile: bool | str = "auto") -> tuple[int, float, float]:
    import torch

    from neuroevo.nn.mlp import PopulationMLP
    from neuroevo.strategies.openes import OpenES
    from neuroevo.tasks.control import ControlTask

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    task = ControlTask("CartPole-v1", episodes=1, seed=seed, compile=compile)
    net = PopulationMLP([4, 16, 2], activation="tanh")
    es = OpenES(net.num_params, POPSIZE, init=net.init_params, sigma=0.1, lr=0.05, seed=seed)
    times = []
    for generation in range(MAX_GENERATIONS):
        t1 = time.perf_counter()
        fitness = task.evaluate(net, es.ask(), generation)
        es.tell(fitness)
        times.append(time.perf_counter() - t1)
        if float(fitness.values.mean()) >= TARGET:
            return generation + 1, time.perf_counter() - t0, per_generation(times)
    return -1, time.perf_counter() - t0, per_generation(times)


def solve_neuroevo_compiled(seed: int) -> tuple[int, float, float]:
    return solve_neuroevo(seed, compile=True)


def per_generation(times: list[float]) -> float:
    """Median seconds of one generation after the first (which compiles or JITs), or nan."""
    return statistics.median(times[1:]) if len(times) > 1 else float("nan")


def solve_evotorch(seed: int) -> tuple[int, float]:
    import numpy as np
    import torch
    from evotorch.algorithms import PGPE
    from evotorch.neuroevolution import GymNE

    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    problem = GymNE(
        env="CartPole-v1",
        network="Linear(obs_length, 16) >> Tanh() >> Linear(16, act_length)",
        observation_normalization=True,
    )
    max_speed = 0.15
    searcher = PGPE(
        problem,
        popsize=POPSIZE,
        center_learning_rate=max_speed * 0.75,
        stdev_learning_rate=0.1,
        radius_init=max_speed * 15,
        optimizer="clipup",
        optimizer_config={"max_speed": max_speed},
        stdev_max_change=0.2,
    )
    times = []
    for generation in range(MAX_GENERATIONS):
        t1 = time.perf_counter()
        searcher.step()
        times.append(time.perf_counter() - t1)
        if float(searcher.status["mean_eval"]) >= TARGET:
            return generation + 1, time.perf_counter() - t0, per_generation(times)
    return -1, time.perf_counter() - t0, per_generation(times)


def solve_evosax(seed: int) -> tuple[int, float]:
    try:
        import seaborn  # noqa: F401
    except ImportError:
        sys.modules["seaborn"] = types.ModuleType("seaborn")  # gymnax uses it only to render Pong
    import gymnax
    import jax
    import jax.numpy as jnp
    import optax
    from evosax.algorithms import Open_ES

    t0 = time.perf_counter()
    env, env_params = gymnax.make("CartPole-v1")
    key = jax.random.key(seed)

    def init(k: jax.Array) -> dict[str, jax.Array]:
        k1, k2 = jax.random.split(k)
        lim1, lim2 = (6 / (4 + 16)) ** 0.5, (6 / (16 + 2)) ** 0.5
        return {
            "w1": jax.random.uniform(k1, (4, 16), minval=-lim1, maxval=lim1),
            "b1": jnp.zeros(16),
            "w2": jax.random.uniform(k2, (16, 2), minval=-lim2, maxval=lim2),
            "b2": jnp.zeros(2),
        }

    def rollout(params: dict[str, jax.Array], k: jax.Array) -> jax.Array:
        obs, state = env.reset(k, env_params)

        def step(carry, _):
            obs, state, k, done, ret = carry
            k, sk = jax.random.split(k)
            action = jnp.argmax(jnp.tanh(obs @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"])
            obs, state, reward, terminated, truncated, _ = env.step(sk, state, action, env_params)
            ret = ret + reward * (1.0 - done)
            ended = jnp.logical_or(terminated, truncated).astype(jnp.float32)
            return (obs, state, k, jnp.maximum(done, ended), ret), None

        carry, _ = jax.lax.scan(step, (obs, state, k, jnp.float32(0.0), jnp.float32(0.0)), None, length=500)
        return carry[-1]

    evaluate = jax.jit(jax.vmap(rollout, in_axes=(0, None)))
    key, k_init = jax.random.split(key)
    center = init(k_init)
    es = Open_ES(
        population_size=POPSIZE,
        solution=center,
        optimizer=optax.adam(0.05),
        std_schedule=optax.constant_schedule(0.1),
    )
    params = es.default_params
    key, k = jax.random.split(key)
    state = es.init(k, center, params)
    times = []
    for generation in range(MAX_GENERATIONS):
        t1 = time.perf_counter()
        key, k_ask, k_eval, k_tell = jax.random.split(key, 4)
        population, state = es.ask(k_ask, state, params)
        returns = evaluate(population, k_eval)
        state, _ = es.tell(k_tell, population, -returns, state, params)  # evosax minimises
        mean = float(returns.mean())  # blocks until the generation is done
        times.append(time.perf_counter() - t1)
        if mean >= TARGET:
            return generation + 1, time.perf_counter() - t0, per_generation(times)
    return -1, time.perf_counter() - t0, per_generation(times)


CONTENDERS = {
    "neuroevo": solve_neuroevo,
    "neuroevo-compiled": solve_neuroevo_compiled,
    "evosax": solve_evosax,
    "evotorch": solve_evotorch,
}
LABELS = {
    "neuroevo": "neuroevo OpenES, fused env (default: eager)",
    "neuroevo-compiled": "neuroevo OpenES, fused env, compile=true",
    "evosax": "evosax 0.3 Open_ES + gymnax (jit, vmap)",
    "evotorch": "EvoTorch 0.6 PGPE + GymNE",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    args = parser.parse_args()
    rows = []
    for name in args.only.split(","):
        runs = []
        for seed in range(args.seeds):
            generations, seconds, per_gen = CONTENDERS[name](seed)
            runs.append((generations, seconds, per_gen))
            print(
                f"{name} seed {seed}: generations {generations}, {seconds:.2f} s, "
                f"{per_gen * 1e3:.1f} ms per generation after the first",
                flush=True,
            )
        solved = [r for r in runs if r[0] > 0]
        med_t = statistics.median(s for _, s, _ in runs)
        med_g = statistics.median(g for g, _, _ in solved) if solved else float("nan")
        med_gen = statistics.median(p for _, _, p in runs)
        rows.append((name, len(solved), len(runs), med_g, med_t, runs[0][1], med_gen))
    base = next((r[4] for r in rows if r[0] == "evosax"), None)
    print(
        f"\nCartPole-v1, population {POPSIZE}, 4-16-2 tanh MLP, solved = population mean return >= {TARGET}"
    )
    print("seeds run in one process: the first seed pays compilation (JIT, inductor) unless cached on disk")
    print(
        f"{'contender':42s} {'solved':>7s} {'median gens':>12s} {'median wall s':>14s} {'seed 0 s':>9s} "
        f"{'ms/gen':>7s} {'evosax/this':>12s}"
    )
    for name, n_ok, n, gens, seconds, first, per_gen in rows:
        ratio = f"{base / seconds:.2f}x" if base else "-"
        print(
            f"{LABELS[name]:42s} {n_ok:>3d}/{n:<3d} {gens:12.1f} {seconds:14.2f} {first:9.2f} "
            f"{per_gen * 1e3:7.1f} {ratio:>12s}"
        )


if __name__ == "__main__":
    main()
