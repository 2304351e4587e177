"""PopulationMLP forward throughput vs the hardware bound and vs a Python loop over members.

For P MLPs of shape 64-256-256-10 (ReLU) on a batch of 256 inputs each, prints:
  - PopulationMLP GFLOP/s (one batched forward of the whole population),
  - the GFLOP/s of one large square torch.matmul with the same FLOPs (the hardware bound),
  - a Python loop over members (one small MLP forward each),
and the ratios. Target: PopulationMLP >= 60% of the matmul bound.

Usage: python benchmarks/population_forward.py [--pops 256 512 1024 2048 4096] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from neuroevo.nn import PopulationMLP

SIZES = [64, 256, 256, 10]
BATCH = 256
SMALL = [8, 32, 32, 2]  # a control-policy-sized network, where per-member calls are overhead-bound


def timed(fn, reps: int) -> float:
    """Median seconds of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def python_loop(mlp: PopulationMLP, params: torch.Tensor, x: torch.Tensor) -> None:
    """The naive alternative: one small MLP forward per member."""
    views = mlp.layer_views(params)
    for i in range(params.shape[0]):
        h = x[i]
        for layer, (w, bias) in enumerate(views):
            h = torch.addmm(bias[i], h, w[i])
            if layer < len(views) - 1:
                h = torch.relu(h)


def measure(mlp: PopulationMLP, pop: int, reps: int, batch: int = BATCH) -> dict[str, float]:
    """Seconds for one population forward, the same-FLOP matmul, and the member loop."""
    params = torch.randn(pop, mlp.num_params) * 0.05
    x = torch.randn(pop, batch, mlp.in_features)
    flops = pop * batch * mlp.flops_per_sample()
    n = round((flops / 2) ** (1 / 3))
    a, b = torch.randn(n, n), torch.randn(n, n)
    return {
        "gflop": flops / 1e9,
        "population": timed(lambda: mlp(params, x), reps),
        "matmul": timed(lambda: torch.matmul(a, b), reps) * flops / (2 * n**3),
        "loop": timed(lambda: python_loop(mlp, params, x), max(1, reps // 2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pops", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--small", action="store_true", help=f"also a {'-'.join(map(str, SMALL))} MLP")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, ReLU hidden layers")
    print(
        f"{'P':>6} {'GFLOP':>7} {'neuroevo GF/s':>14} {'matmul GF/s':>12} {'% bound':>8} {'loop GF/s':>10} "
        f"{'x loop':>7}"
    )
    runs = [(SIZES, pop) for pop in args.pops]
    if args.small:
        runs += [(SMALL, pop) for pop in args.pops]
    for sizes, pop in runs:
        if sizes is SMALL and pop == args.pops[0]:
            print(f"MLP {'-'.join(map(str, SMALL))}, batch {BATCH}")
        mlp = PopulationMLP(sizes, activation="relu")
        r = measure(mlp, pop, args.reps)
        gf = r["gflop"]
        print(
            f"{pop:>6} {gf:>7.1f} {gf / r['population']:>14.1f} {gf / r['matmul']:>12.1f} "
            f"{100 * r['matmul'] / r['population']:>7.0f}% {gf / r['loop']:>10.1f} "
            f"{r['loop'] / r['population']:>6.2f}x"
        )


if __name__ == "__main__":
    main()
