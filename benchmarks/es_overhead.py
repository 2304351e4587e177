"""ES update cost: ask + evaluate (sphere, batched) + tell, ms per generation, neuroevo vs EvoX and evosax.

Run in the benchmark environment (it has torch 2.13, EvoX 1.4 and evosax 0.3; neuroevo comes
from the source tree, it never depends on the peers):

    PYTHONPATH=src .bench-venv/bin/python benchmarks/es_overhead.py [--quick] [--only openes,cmaes]

Every (row, library) pair runs in its own subprocess of this script, one after the other
(neuroevo, EvoX, evosax for each row), single-threaded: ``torch.set_num_threads(1)`` and
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``. A
generation is ask, a batched sphere ``f(x) = sum x^2`` over the whole population, and tell
(evosax: one ``jax.jit`` function of all three, timed until the new state is ready; EvoX:
``StdWorkflow.step()`` in eager mode). The figure is the median over ``--gens`` generations
after ``--warmup`` generations (which absorb JIT compilation). The last column is neuroevo's
time over the fastest peer's (below 1 means neuroevo is faster). A peer without the
algorithm shows "n/a"; a peer that raises shows "fails: <reason>".

Peers' counterparts: OpenES = evosax ``Open_ES`` (Adam) / EvoX ``OpenES`` (Adam); SNES =
``SNES``; CMA-ES = evosax ``CMA_ES`` / EvoX ``CMAES``; sep-CMA-ES = evosax ``Sep_CMA_ES``;
PGPE = evosax ``PGPE`` (ClipUp); GA = evosax ``SimpleGA``. EGGROLL (low-rank ES) has no peer
in evosax 0.3; EvoX's ``VirtualLoRAES`` is an alias of its full-rank ``VirtualES`` (Triton
kernels, a virtual-population problem), so it is not a counterpart. EGGROLL's population is
never expanded: its sphere is evaluated from the factors,
``|c + s E|^2 = |c|^2 + 2 s <c, E> + s^2 |E|^2`` with ``<W, A B^T> = sum(A * (W B))`` and
``|A B^T|^2 = sum((A^T A) * (B^T B))``.

``--quick`` shrinks every row (D <= 2,000, P <= 32, two timed generations): a smoke test of
the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LIBRARIES = ("neuroevo", "evox", "evosax")
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


@dataclass(frozen=True)
class Row:
    strategy: str
    dim: int
    pop: int
    gens: int = 10

    def quick(self) -> Row:
        return Row(self.strategy, min(self.dim, 2_000), min(self.pop, 32), 2)


ROWS = (
    Row("openes", 10_000, 1_024),
    Row("openes", 1_000_000, 256, gens=5),
    Row("snes", 10_000, 1_024),
    Row("cmaes", 100, 64, gens=50),
    Row("cmaes", 1_000, 64, gens=50),
    Row("pgpe", 10_000, 1_024),
    Row("sep_cmaes", 10_000, 1_024),
    Row("ga", 10_000, 1_024),
    Row("eggroll", 10_000_000, 1_024, gens=5),
)
#: algorithms a peer does not have (no counterpart): reported as n/a
MISSING = {"evox": {"pgpe", "sep_cmaes", "ga", "eggroll"}, "evosax": {"eggroll"}}
SIGMA, LR = 0.1, 0.05


def eggroll_shape(dim: int) -> tuple[int, int, int]:
    """One weight matrix ``rows x cols`` plus ``rows`` biases, ``rows * (cols + 1) = dim`` (about)."""
    rows = max(2, int(math.sqrt(dim / 1.6)))
    cols = max(1, dim // rows - 1)
    return rows, cols, rows * (cols + 1)


# -- one generation per library ------------------------------------------------------------------
def neuroevo_runner(row: Row):
    import torch

    from neuroevo import strategies as S

    torch.set_num_threads(1)
    d, p = row.dim, row.pop
    x0 = torch.ones(d)
    if row.strategy == "eggroll":
        rows, cols, d = eggroll_shape(d)
        es = S.EGGROLL(d, p, slots=[(0, rows, cols)], center=torch.ones(d), sigma=SIGMA, lr=LR)
        return lambda: es.tell(eggroll_sphere(es.ask(), torch))
    if row.strategy == "openes":
        es = S.OpenES(d, p, center=x0, sigma=SIGMA, lr=LR)
    elif row.strategy == "snes":
        es = S.SNES(d, p, center=x0, sigma=SIGMA)
    elif row.strategy == "pgpe":
        es = S.PGPE(d, p, center=x0, sigma=SIGMA)
    elif row.strategy == "cmaes":
        es = S.CMAES(d, p, center=x0, sigma=SIGMA, restarts=0)
    elif row.strategy == "sep_cmaes":
        es = S.SepCMAES(d, p, center=x0, sigma=SIGMA, restarts=0)
    elif row.strategy == "ga":
        es = S.GA(d, p, init=x0, truncation=p // 2, mutation_power=SIGMA)
    else:
        raise ValueError(row.strategy)

    def generation() -> None:
        x = es.ask()
        es.tell(-(x * x).sum(-1))  # neuroevo maximises

    return generation


def eggroll_sphere(pop, torch):
    """Minus the sphere of every low-rank member, from the factors (never the [P, D] population)."""
    (offset, rows, cols), r = pop.slots[0], pop.ranks[0]
    c = pop.center
    w = c[offset : offset + rows * cols].view(rows, cols)
    a, b = pop.a[0], pop.b[0]  # [H, rows, r], [H, cols, r]
    wb = (w @ b.permute(1, 0, 2).reshape(cols, -1)).view(rows, -1, r).permute(1, 0, 2)  # [H, rows, r]
    inner = (a * wb).sum((1, 2)) / math.sqrt(r)
    sq = ((a.transpose(1, 2) @ a) * (b.transpose(1, 2) @ b)).sum((1, 2)) / r
    v = c[pop.vector_index]
    inner = inner + pop.vector_noise @ v
    sq = sq + (pop.vector_noise * pop.vector_noise).sum(-1)
    base, s = float((c * c).sum()), pop.sigma
    plus, minus = base + 2 * s * inner + s * s * sq, base - 2 * s * inner + s * s * sq
    return -torch.cat([plus, minus]) if pop.antithetic else -plus


def evox_runner(row: Row):
    import torch
    from evox import algorithms as A
    from evox.core import Problem
    from evox.workflows import StdWorkflow

    torch.set_num_threads(1)
    d, p = row.dim, row.pop
    x0 = torch.ones(d)

    class Sphere(Problem):
        def evaluate(self, pop: torch.Tensor) -> torch.Tensor:
            return (pop * pop).sum(-1)

    if row.strategy == "openes":
        algo = A.OpenES(p, x0, learning_rate=LR, noise_stdev=SIGMA, optimizer="adam")
    elif row.strategy == "snes":
        algo = A.SNES(p, x0, sigma=SIGMA)
    elif row.strategy == "cmaes":
        algo = A.CMAES(x0, SIGMA, pop_size=p)
    else:
        raise ValueError(row.strategy)
    workflow = StdWorkflow(algo, Sphere())
    workflow.init_step()
    return workflow.step


def evosax_runner(row: Row):
    import jax
    import jax.numpy as jnp
    import optax
    from evosax import algorithms as A

    d, p = row.dim, row.pop
    x0 = jnp.ones(d)
    key = jax.random.key(0)
    population_based = row.strategy == "ga"
    if row.strategy == "openes":
        es = A.Open_ES(p, x0, optimizer=optax.adam(LR), std_schedule=optax.constant_schedule(SIGMA))
    elif row.strategy == "snes":
        es = A.SNES(p, x0)
    elif row.strategy == "cmaes":
        es = A.CMA_ES(p, x0)
    elif row.strategy == "sep_cmaes":
        es = A.Sep_CMA_ES(p, x0)
    elif row.strategy == "pgpe":
        es = A.PGPE(p, x0)
    elif row.strategy == "ga":
        es = A.SimpleGA(p, x0, std_schedule=optax.constant_schedule(SIGMA))
    else:
        raise ValueError(row.strategy)
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=SIGMA)
    if population_based:
        init_pop = x0 + SIGMA * jax.random.normal(key, (p, d))
        state = es.init(key, init_pop, jnp.sum(init_pop * init_pop, -1), params)
    else:
        state = es.init(key, x0, params)

    @jax.jit
    def step(state, key):
        key, k_ask, k_tell = jax.random.split(key, 3)
        pop, state = es.ask(k_ask, state, params)
        state, _ = es.tell(k_tell, pop, jnp.sum(pop * pop, -1), state, params)  # evosax minimises
        return state, key

    box = {"state": state, "key": key}

    def generation() -> None:
        box["state"], box["key"] = step(box["state"], box["key"])
        jax.block_until_ready(box["state"])

    return generation


RUNNERS = {"neuroevo": neuroevo_runner, "evox": evox_runner, "evosax": evosax_runner}


def worker(lib: str, row: Row, warmup: int) -> dict:
    """Median ms per generation of ``lib`` on ``row`` (runs in a subprocess)."""
    generation = RUNNERS[lib](row)
    for _ in range(warmup):
        generation()
    times = []
    for _ in range(row.gens):
        t0 = time.perf_counter()
        generation()
        times.append(1e3 * (time.perf_counter() - t0))
    return {"ms": statistics.median(times)}


# -- the table --------------------------------------------------------------------------------
def run_one(lib: str, row: Row, args: argparse.Namespace) -> str | float:
    if row.strategy in MISSING.get(lib, ()):
        return "n/a"
    cmd = [sys.executable, __file__, "--worker", lib, json.dumps(row.__dict__), "--warmup", str(args.warmup)]
    env = {**os.environ, **THREAD_ENV}
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return f"fails: over {args.timeout} s"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        tail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        return f"fails: {tail[:80]}"
    result = json.loads(lines[-1])
    return result["ms"] if "ms" in result else f"fails: {result['error'][:80]}"


def cell(value: str | float) -> str:
    return value if isinstance(value, str) else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 generations (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated strategies (default: all rows)")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated libraries")
    parser.add_argument("--max-dim", type=int, default=0, help="skip rows with a larger D (0: none)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed generations (JIT compilation)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per (row, library)")
    parser.add_argument("--worker", nargs=2, metavar=("LIB", "ROW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        lib, spec = args.worker
        try:
            result = worker(lib, Row(**json.loads(spec)), args.warmup)
        except Exception as exc:  # reported in the table as "fails: <reason>"
            result = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        print(json.dumps(result))
        return
    only = {s for s in args.only.split(",") if s}
    libs = [lib for lib in args.libs.split(",") if lib]
    rows = [
        r for r in ROWS if (not only or r.strategy in only) and not (args.max_dim and r.dim > args.max_dim)
    ]
    rows = [r.quick() if args.quick else r for r in rows]
    if args.quick:
        args.warmup = min(args.warmup, 2)  # evosax compiles on the first two calls
    print("| strategy | D | P | " + " | ".join(libs) + " | neuroevo / fastest peer |")
    print("|---|---:|---:|" + "---:|" * len(libs) + "---:|", flush=True)
    for row in rows:
        d = eggroll_shape(row.dim)[2] if row.strategy == "eggroll" else row.dim
        results = {lib: run_one(lib, row, args) for lib in libs}
        peers = [v for lib, v in results.items() if lib != "neuroevo" and isinstance(v, float)]
        ours = results.get("neuroevo")
        ratio = f"{ours / min(peers):.2f}" if peers and isinstance(ours, float) else "-"
        cells = " | ".join(cell(results[lib]) for lib in libs)
        print(f"| {row.strategy} | {d:,} | {row.pop:,} | {cells} | {ratio} |", flush=True)
    print("\nms per generation (ask + sphere + tell), median after warm-up, one thread.")


if __name__ == "__main__":
    main()
