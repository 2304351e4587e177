"""EGGROLL vs full-rank OpenES: population forward throughput and peak memory for a large MLP.

    .venv/bin/python benchmarks/eggroll.py                 # P = 4096, batch 64, 3 x 1024 MLP, rank 1
    .venv/bin/python benchmarks/eggroll.py --pop 1024 --reps 1 --out /tmp/eggroll.json

Network: ``PopulationMLP([1024, 1024, 1024, 1024])`` (3 weight matrices of 1024 x 1024,
D = 3,148,800), tanh. Every member gets its own ``batch`` inputs (``x[P, B, 1024]``, as in
RL where each member sees its own observations). Three ways to run the P x B inputs:

- plain: the unperturbed centre on all ``P * B`` inputs (one network, shared weights: three
  big GEMMs). This is the ceiling.
- eggroll: ``EGGROLL.ask()`` (rank r) through ``EggrollMLP``: the same shared GEMMs plus
  thin rank-r batched matmuls per layer; never ``P x m x n``.
- full-rank: ``OpenES.ask()`` (a ``[P, D]`` population) through ``PopulationMLP``: one
  ``B x 1024 x 1024`` matmul per member and layer, and ``P x D`` floats of population
  (at P = 4096: 51.6 GB in float32 -- it does not fit in 24 GiB). It is measured at small
  P, and peak memory is extrapolated linearly in P to find the largest P that fits.

Throughput = P * B / forward seconds. Each method is timed in one process together with
the plain baseline, the two forward passes alternating ``--reps`` times (best of each kept),
so the fraction of plain is robust to a shared CPU whose load drifts. Peak resident memory
(``ru_maxrss``) comes from a separate fresh process per method that runs one pass. ``ask``
time is reported separately. A memory guard skips any run whose estimated need exceeds the
memory available now.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GiB = 1024**3
WIDTH, LAYERS = 1024, 3


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def num_params() -> int:
    return LAYERS * (WIDTH * WIDTH + WIDTH)


def estimate_bytes(mode: str, pop: int, batch: int) -> int:
    """A generous estimate of the peak, for the memory guard only."""
    acts = 4 * pop * batch * WIDTH * 4  # input, two activations, one output in flight
    if mode == "fullrank":
        return int(2.2 * pop * num_params() * 4) + acts
    return acts + 64 * pop * WIDTH * 4 + num_params() * 16


def _runners(modes: list[str], pop: int, batch: int, rank: int) -> dict:
    """For each mode, (seconds spent in ask, a closure running the forward pass)."""
    import torch

    from neuroevo.nn import PopulationMLP
    from neuroevo.nn.lowrank import EggrollMLP
    from neuroevo.strategies import EGGROLL, OpenES

    mlp = PopulationMLP([WIDTH] * (LAYERS + 1), activation="tanh")
    phen = EggrollMLP(mlp)
    center = mlp.init_params(torch.Generator().manual_seed(0))
    x = torch.randn(pop, batch, WIDTH, generator=torch.Generator().manual_seed(1))
    runners = {}
    for mode in modes:
        t0 = time.perf_counter()
        if mode == "plain":
            run = lambda: mlp.forward(center, x.view(pop * batch, WIDTH))  # noqa: E731
        elif mode == "eggroll":
            es = EGGROLL(
                mlp.num_params, pop, slots=phen.lowrank_slots(), rank=rank, center=center, sigma=0.01
            )
            lowrank = es.ask()
            run = lambda p=lowrank: phen.forward(p, x)  # noqa: E731
        else:
            dense = OpenES(mlp.num_params, pop, center=center, sigma=0.01).ask()
            run = lambda p=dense: mlp.forward(p, x)  # noqa: E731
        runners[mode] = (time.perf_counter() - t0, run)
    return runners


def worker(modes: list[str], pop: int, batch: int, rank: int, reps: int, threads: int) -> dict:
    """One measurement in its own process: the modes' forward passes interleaved ``reps`` times.

    Interleaving (plain, eggroll, plain, eggroll, ...) and keeping the best time of each
    makes the ratio robust to a CPU whose load changes over minutes (a shared machine).
    """
    import torch

    torch.set_num_threads(threads)
    runners = _runners(modes, pop, batch, rank)
    times: dict[str, list[float]] = {m: [] for m in modes}
    with torch.no_grad():
        for _ in range(reps):
            for mode in modes:
                t = time.perf_counter()
                out = runners[mode][1]()
                times[mode].append(time.perf_counter() - t)
                del out
    result = {
        "modes": modes,
        "pop": pop,
        "batch": batch,
        "rank": rank,
        "threads": threads,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    for mode in modes:
        best = min(times[mode])
        result[mode] = {
            "ask_s": round(runners[mode][0], 3),
            "forward_s": round(best, 3),
            "forward_all_s": [round(t, 3) for t in times[mode]],
            "samples_per_s": pop * batch / best,
            "gflops": 2 * pop * batch * LAYERS * WIDTH * WIDTH / best / 1e9,
        }
    return result


def measure(modes: list[str], pop: int, args: argparse.Namespace, reps: int) -> dict | None:
    """Run ``worker`` in a fresh process (so its peak RSS is its own); None if it cannot fit."""
    need = sum(estimate_bytes(m, pop, args.batch) for m in modes)
    if need > available_bytes() - 2 * GiB:
        print(f"skip {modes} P={pop}: needs ~{need / GiB:.1f} GiB", file=sys.stderr)
        return None
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        ",".join(modes),
        "--pop",
        str(pop),
        "--batch",
        str(args.batch),
    ]
    cmd += ["--rank", str(args.rank), "--reps", str(reps), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        print(f"{modes} P={pop} failed: {done.stderr[-2000:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def fit_line(points: list[tuple[int, int]]) -> tuple[float, float]:
    """Least-squares ``bytes = a + b * P``."""
    n = len(points)
    mx = sum(p for p, _ in points) / n
    my = sum(m for _, m in points) / n
    sxx = sum((p - mx) ** 2 for p, _ in points)
    b = sum((p - mx) * (m - my) for p, m in points) / sxx
    return my - b * mx, b


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pop", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rank", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions for throughput")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fullrank-pop", type=int, default=64, help="P of the full-rank throughput run")
    parser.add_argument("--fullrank-memory-pops", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--eggroll-memory-pops", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--memory-limit-gib", type=float, default=24.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker.split(","), args.pop, args.batch, args.rank, args.reps, args.threads)
        print(json.dumps(result))
        return

    runs = []
    # throughput: interleaved in one process, fractions of plain measured side by side
    speed = measure(["plain", "eggroll"], args.pop, args, args.reps)
    speed_full = measure(["plain", "fullrank"], args.fullrank_pop, args, args.reps)
    # peak memory: one mode per process, one forward pass
    memory = {m: measure([m], args.pop, args, 1) for m in ("plain", "eggroll", "fullrank")}
    egg_mem = [r for p in args.eggroll_memory_pops if (r := measure(["eggroll"], p, args, 1))]
    full_mem = [r for p in args.fullrank_memory_pops if (r := measure(["fullrank"], p, args, 1))]
    runs = [r for r in [speed, speed_full, *memory.values(), *egg_mem, *full_mem] if r]
    limit = args.memory_limit_gib * GiB

    def rss(r: dict | None) -> str:
        return f"{r['peak_rss_bytes'] / GiB:.2f}" if r else "n/a"

    lines = [
        f"3-layer {WIDTH}-wide MLP (D = {num_params():,}), batch {args.batch} per member, EGGROLL rank "
        f"{args.rank}, {args.threads} threads. Forward: best of {args.reps} interleaved passes "
        "(plain and the method alternate in one process). Peak RSS: one pass in a fresh process.",
        "",
        "| method | P | forward s | samples/s | fraction of plain (same P) "
        f"| fraction of plain at P = {args.pop} | ask s | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, mode, name in (
        (speed, "eggroll", f"EGGROLL r={args.rank}"),
        (speed_full, "fullrank", "full-rank OpenES"),
    ):
        if not run:
            continue
        plain, other = run["plain"], run[mode]
        mem_plain = memory["plain"] if run["pop"] == args.pop else None
        mem_other = (
            memory[mode]
            if run["pop"] == args.pop
            else next((r for r in full_mem if r["pop"] == run["pop"]), None)
        )
        for label, r, mem in (("plain (shared weights)", plain, mem_plain), (name, other, mem_other)):
            frac = other["samples_per_s"] / plain["samples_per_s"] if r is other else 1.0
            ceiling = f"{r['samples_per_s'] / speed['plain']['samples_per_s']:.0%}" if speed else ""
            lines.append(
                f"| {label} | {run['pop']} | {r['forward_s']:.2f} | {r['samples_per_s']:,.0f} | {frac:.0%} | "
                f"{ceiling} | {r['ask_s']:.2f} | {rss(mem)} |"
            )
    if memory["fullrank"] is None:
        lines.append(f"| full-rank OpenES | {args.pop} | not run (memory guard; see below) | | | | | |")
    lines.append("")
    population_bytes = num_params() * 4
    lines.append(
        f"A full-rank member is {population_bytes / 2**20:.1f} MiB (float32), so the [P, D] population "
        f"alone exceeds {args.memory_limit_gib:g} GiB from P = {int(limit // population_bytes):,} "
        f"(P = {args.pop}: {args.pop * population_bytes / GiB:.0f} GiB)."
    )
    if len(full_mem) >= 2:
        a, b = fit_line([(r["pop"], r["peak_rss_bytes"]) for r in full_mem])
        lines.append(
            f"Measured full-rank peak (OpenES.ask() + forward) ~ {a / GiB:.2f} GiB + {b / 2**20:.1f} MiB x P "
            f"(fit over P = {', '.join(str(r['pop']) for r in full_mem)}): it exceeds "
            f"{args.memory_limit_gib:g} GiB from P ~ {int((limit - a) / b):,}; "
            f"P = {args.pop} would need ~{(a + b * args.pop) / GiB:.0f} GiB."
        )
    egg_all = [r for r in [memory["eggroll"], *egg_mem] if r]
    if len(egg_all) >= 2:
        a, b = fit_line([(r["pop"], r["peak_rss_bytes"]) for r in egg_all])
        lines.append(
            f"Measured EGGROLL peak ~ {a / GiB:.2f} GiB + {b / 2**20:.2f} MiB x P (fit over P = "
            f"{', '.join(str(r['pop']) for r in egg_all)}; at batch {args.batch} mostly the P x batch "
            f"activations and inputs): P up to ~{int((limit - a) / b):,} fits in "
            f"{args.memory_limit_gib:g} GiB."
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "report": report}, indent=1))


if __name__ == "__main__":
    main()
