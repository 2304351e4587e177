"""Evaluations to reach a target on standard test functions: neuroevo's ES vs pycma and evosax.

Run in the benchmark environment (it has cma, evosax and jax; neuroevo never depends on them):

    .bench-venv/bin/python benchmarks/es_functions.py --seeds 15 --out /tmp/es_functions.jsonl

Every method minimises f(x) (ours maximise -f) from the same start: x0 uniform in [-4, 4]^D
drawn from the seed, sigma0 = 2. A run counts the evaluations until the first one with
``f <= target`` (in evaluation order), up to a budget; a run that never gets there is a
failure. The table gives the median over seeds (failures count as infinitely many
evaluations, so the median is finite only when at least half succeed) and the success rate.

- CMA-ES: ours (``cmaes``, active, IPOP with 9 restarts and population doubling) against
  ``cma.fmin2`` with ``restarts=9, incpopsize=2`` (IPOP-CMA-ES) at default settings.
- SNES: ours against evosax 0.3.2 ``SNES`` (default population 4 + 3 ln D, default rates).
- PGPE: ours (ClipUp) against evosax ``PGPE`` (ClipUp) with the same population, step size,
  max speed and sigma learning rate. PGPE with a constant ClipUp step cannot reach 1e-8,
  so its target is looser (``--pgpe-target``).

SNES, PGPE and their peers are separable (diagonal) methods and do not reach the target on
rosenbrock or rastrigin; their budget there is capped at ``--budget-separable-hard``. A
second table gives the median best f of each cell (at the target or at the budget).

Results go to a JSONL file (one line per run, so a long run can be resumed with the same
``--out``) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Every method runs single-threaded (pycma through numpy's BLAS, ours through torch): on a
# shared 2-core machine BLAS thread pools spin-wait and make small-matrix work 10x slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

FUNCTIONS = ("sphere", "ellipsoid", "rosenbrock", "rastrigin")
METHODS = ("cmaes", "pycma", "snes", "evosax_snes", "pgpe", "evosax_pgpe")


# -- test functions (minimised), for torch [P, D], numpy [D] and jax [P, D] -------------------
def f_torch(name: str, x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    if name == "sphere":
        return (x * x).sum(-1)
    if name == "ellipsoid":
        c = 1e6 ** (torch.arange(d, dtype=x.dtype) / (d - 1))
        return (c * x * x).sum(-1)
    if name == "rosenbrock":
        return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)
    return 10 * d + (x * x - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def f_numpy(name: str, x: np.ndarray) -> float:
    return float(f_torch(name, torch.from_numpy(np.asarray(x, dtype=np.float64))))


def start_point(seed: int, dim: int) -> np.ndarray:
    return np.random.default_rng(1000 + seed).uniform(-4, 4, dim)


class Counter:
    """Counts evaluations and remembers when the target was first reached."""

    def __init__(self, target: float, budget: int):
        self.target, self.budget, self.evals, self.hit, self.best = target, budget, 0, None, math.inf

    def record(self, values: np.ndarray) -> None:
        for v in np.atleast_1d(values):
            self.evals += 1
            self.best = min(self.best, float(v))
            if self.hit is None and v <= self.target:
                self.hit = self.evals

    @property
    def done(self) -> bool:
        return self.hit is not None or self.evals >= self.budget


# -- runners ----------------------------------------------------------------------------------
def run_ours(method: str, fn: str, dim: int, seed: int, counter: Counter, args: argparse.Namespace) -> None:
    from neuroevo.strategies import CMAES, PGPE, SNES

    x0 = torch.from_numpy(start_point(seed, dim))
    common = {"center": x0, "sigma": args.sigma0, "seed": seed, "dtype": torch.float64}
    if method == "cmaes":
        es = CMAES(dim, **common)
    elif method == "snes":
        es = SNES(dim, **common)
    else:
        es = PGPE(dim, args.pgpe_popsize, lr=args.pgpe_lr, max_speed=2 * args.pgpe_lr, **common)
    while not counter.done:
        x = es.ask()
        f = f_torch(fn, x)
        counter.record(f.numpy())
        es.tell(-f)


def run_pycma(fn: str, dim: int, seed: int, counter: Counter, args: argparse.Namespace) -> None:
    import cma

    def objective(x: np.ndarray) -> float:
        value = f_numpy(fn, x)
        counter.record(np.array([value]))
        return value

    opts = {
        "ftarget": counter.target,
        "maxfevals": counter.budget,
        "seed": seed + 1,
        "verbose": -9,
        "verb_log": 0,
        "verb_disp": 0,
    }
    cma.fmin2(objective, start_point(seed, dim), args.sigma0, opts, restarts=9, incpopsize=2)


_EVOSAX_CACHE: dict[tuple, Callable] = {}


def run_evosax(method: str, fn: str, dim: int, seed: int, counter: Counter, args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    from evosax.algorithms import PGPE as EPGPE
    from evosax.algorithms import SNES as ESNES
    from evosax.core.optimizer import clipup

    jax.config.update("jax_enable_x64", True)

    def f_jax(x):  # [P, D]
        if fn == "sphere":
            return (x * x).sum(-1)
        if fn == "ellipsoid":
            c = 1e6 ** (jnp.arange(dim) / (dim - 1))
            return (c * x * x).sum(-1)
        if fn == "rosenbrock":
            return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(-1)
        return 10 * dim + (x * x - 10 * jnp.cos(2 * math.pi * x)).sum(-1)

    key_cache = (method, fn, dim, args.pgpe_popsize, args.pgpe_lr, args.sigma0)
    if key_cache not in _EVOSAX_CACHE:
        solution = jnp.zeros(dim)
        if method == "evosax_snes":
            es = ESNES(4 + int(3 * math.log(dim)), solution)
        else:
            opt = clipup(learning_rate=args.pgpe_lr, max_velocity=2 * args.pgpe_lr)
            es = EPGPE(args.pgpe_popsize, solution, optimizer=opt)
        params = es.default_params.replace(std_init=args.sigma0)

        def init(key, mean):
            return es.init(key, mean, params)

        def step(key, state):
            k_ask, k_tell = jax.random.split(key)
            x, state = es.ask(k_ask, state, params)
            f = f_jax(x)
            state, _ = es.tell(k_tell, x, f, state, params)
            return state, f

        _EVOSAX_CACHE[key_cache] = (jax.jit(init), jax.jit(step))
    init, step = _EVOSAX_CACHE[key_cache]
    key = jax.random.key(seed)
    key, k0 = jax.random.split(key)
    state = init(k0, jnp.asarray(start_point(seed, dim)))
    while not counter.done:
        key, k = jax.random.split(key)
        state, f = step(k, state)
        counter.record(np.asarray(f))


# -- driver -----------------------------------------------------------------------------------
def budget_for(fn: str, dim: int, method: str, args: argparse.Namespace) -> int:
    if method not in ("cmaes", "pycma") and fn in ("rosenbrock", "rastrigin"):
        return args.budget_separable_hard  # separable methods do not get there; cap the time spent
    if dim <= 10:
        return args.budget_10 if fn != "rastrigin" else args.budget_rastrigin_10
    return args.budget_100 if fn in ("sphere", "ellipsoid") else args.budget_100_hard


def target_for(method: str, args: argparse.Namespace) -> float:
    return args.pgpe_target if "pgpe" in method else args.target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=FUNCTIONS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--target", type=float, default=1e-8)
    parser.add_argument("--pgpe-target", type=float, default=1e-2)
    parser.add_argument("--sigma0", type=float, default=2.0)
    parser.add_argument("--pgpe-popsize", type=int, default=100)
    parser.add_argument("--pgpe-lr", type=float, default=0.15)
    parser.add_argument("--budget-10", type=int, default=100_000)
    parser.add_argument("--budget-rastrigin-10", type=int, default=400_000)
    parser.add_argument("--budget-100", type=int, default=1_000_000)
    parser.add_argument("--budget-100-hard", type=int, default=300_000)
    parser.add_argument("--budget-separable-hard", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("es_functions.jsonl"))
    args = parser.parse_args(argv)

    done: dict[tuple, dict] = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done[(r["method"], r["function"], r["dim"], r["seed"])] = r
    torch.set_num_threads(1)
    with args.out.open("a") as log:
        for dim in args.dims:
            for fn in args.functions:
                for method in args.methods:
                    for seed in range(args.seeds):
                        key = (method, fn, dim, seed)
                        if key in done:
                            continue
                        counter = Counter(target_for(method, args), budget_for(fn, dim, method, args))
                        t0 = time.perf_counter()
                        if method in ("cmaes", "snes", "pgpe"):
                            run_ours(method, fn, dim, seed, counter, args)
                        elif method == "pycma":
                            run_pycma(fn, dim, seed, counter, args)
                        else:
                            run_evosax(method, fn, dim, seed, counter, args)
                        r = {
                            "method": method,
                            "function": fn,
                            "dim": dim,
                            "seed": seed,
                            "target": counter.target,
                            "budget": counter.budget,
                            "evals": counter.hit,
                            "best": counter.best,
                            "seconds": round(time.perf_counter() - t0, 3),
                        }
                        done[key] = r
                        log.write(json.dumps(r) + "\n")
                        log.flush()
                        print(json.dumps(r), file=sys.stderr, flush=True)
    print(table(done.values(), args))
    print()
    print(best_table(done.values()))


def table(records, args: argparse.Namespace) -> str:
    """Markdown: median evaluations to target (success rate) per function, dimension and method."""
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r["function"], r["dim"], r["method"]), []).append(r)
    methods = [m for m in METHODS if any(k[2] == m for k in groups)]
    lines = [
        "| function | D | " + " | ".join(methods) + " | ours / peer (CMA-ES) |",
        "|---|---|" + "---|" * (len(methods) + 1),
    ]
    for dim in sorted({k[1] for k in groups}):
        for fn in FUNCTIONS:
            cells, medians = [], {}
            for m in methods:
                runs = groups.get((fn, dim, m), [])
                if not runs:
                    cells.append("")
                    continue
                evals = sorted(r["evals"] if r["evals"] is not None else math.inf for r in runs)
                med = statistics.median(evals)
                medians[m] = med
                ok = sum(e != math.inf for e in evals)
                shown = f"{med:,.0f}" if med != math.inf else f"> {runs[0]['budget']:,}"
                cells.append(f"{shown} ({ok}/{len(runs)})")
            if not any(cells):
                continue
            ratio = ""
            if medians.get("cmaes", math.inf) < math.inf and medians.get("pycma", math.inf) < math.inf:
                ratio = f"{medians['cmaes'] / medians['pycma']:.2f}"
            lines.append(f"| {fn} | {dim} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def best_table(records) -> str:
    """Markdown: median best f of each run (at the target or at the end of its budget)."""
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r["function"], r["dim"], r["method"]), []).append(r.get("best", math.nan))
    methods = [m for m in METHODS if any(k[2] == m for k in groups)]
    lines = ["| function | D | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for dim in sorted({k[1] for k in groups}):
        for fn in FUNCTIONS:
            cells = [
                f"{statistics.median(groups[(fn, dim, m)]):.2g}" if (fn, dim, m) in groups else ""
                for m in methods
            ]
            if any(cells):
                lines.append(f"| {fn} | {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
