"""PBT vs random search on digits, same space, same total optimiser steps; plus stacked vs looped training.

    PYTHONPATH=src .venv/bin/python benchmarks/pbt_vs_random.py                # 5 seeds, as in RESULTS-pbt.md
    PYTHONPATH=src .venv/bin/python benchmarks/pbt_vs_random.py --seeds 1 --generations 5

Both arms are ``examples/digits_pbt.toml`` (MLP 64-128-10, SGD with momentum, P = 16, 20 ready
intervals of 100 steps, space: lr, weight decay, momentum). Random search is the same
vectorised run with ``exploit = "none"``: 16 members trained with fixed hyperparameters drawn
from the same prior (the same initial draws as PBT's, since they come from the same keys).

Selection uses the validation split (PBT's fitness). To report an accuracy that selection has
not seen, the task's validation split is cut in two halves by a fixed permutation: ``val``
(fitness, selection) and ``test`` (reported only). For each seed:

- PBT: the member with the best final validation accuracy; its val and test accuracy;
- random: the 16 final members; the best by validation (its val and test accuracy) and the
  median over the 16.

Then the training throughput of the stacked trainer (``torch.func`` + vectorised SGD) against
16 separate ``nn.Module`` + ``torch.optim.SGD`` trained in a Python loop, same steps and
batches (one torch thread).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neuroevo.config import build, load_config
from neuroevo.core import random as nrandom
from neuroevo.runtime import evolve

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_pbt.toml"


def _split_val(task, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = task.data
    order = torch.randperm(data.x_val.shape[0], generator=nrandom.member_generator(seed, 0, 0, "bench_test"))
    half = order.numel() // 2
    x, y = data.x_val, data.y_val
    data.x_val, data.y_val = x[order[:half]], y[order[:half]]
    return x[order[half:]], y[order[half:]]


def run(seed: int, exploit: str, generations: int) -> dict[str, float]:
    cfg = load_config(EXAMPLE, {"run": {"seed": seed, "generations": generations}})
    cfg.strategy.exploit = exploit
    built = build(cfg)
    x_test, y_test = _split_val(built.task, 1000 + seed)
    t0 = time.perf_counter()
    evolve(built.strategy, built.phenotype, built.task, generations=generations)
    seconds = time.perf_counter() - t0
    task = built.task
    with torch.no_grad():
        val = task.data.score(
            built.phenotype.forward_stacked(task.weights, task.data.x_val), task.data.y_val, "accuracy"
        )
        test = task.data.score(built.phenotype.forward_stacked(task.weights, x_test), y_test, "accuracy")
    best = int(torch.argmax(val))
    return {
        "best_val": float(val[best]),
        "best_test": float(test[best]),
        "median_val": float(val.median()),
        "median_test": float(test.median()),
        "seconds": seconds,
    }


def throughput(steps: int = 200) -> tuple[float, float]:
    """Member-steps per second: stacked (vmap) vs a Python loop over 16 modules with torch.optim."""
    cfg = load_config(EXAMPLE)
    built = build(cfg)
    task, net = built.task, built.phenotype
    pop = built.strategy.ask()
    task.init_members(net, 16)
    hp = task.member_hyperparams(pop)
    task.train(net, hp, 5, 0)  # warm-up
    t0 = time.perf_counter()
    task.train(net, hp, steps, 1)
    stacked = 16 * steps / (time.perf_counter() - t0)
    modules = [net.to_module(net.init_params(torch.Generator().manual_seed(i))) for i in range(16)]
    opts = [
        torch.optim.SGD(
            m.parameters(),
            lr=float(hp["lr"][i]),
            momentum=float(hp["momentum"][i]),
            weight_decay=float(hp["weight_decay"][i]),
        )
        for i, m in enumerate(modules)
    ]
    x, y = task.data.x_train, task.data.y_train
    t0 = time.perf_counter()
    for k in range(steps):
        idx = torch.randint(x.shape[0], (16, 64), generator=nrandom.member_generator(0, 1, k, "pbt_batch"))
        for i in range(16):
            opts[i].zero_grad()
            F.cross_entropy(modules[i](x[idx[i]]), y[idx[i]]).backward()
            opts[i].step()
    looped = 16 * steps / (time.perf_counter() - t0)
    return stacked, looped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--generations", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in range(args.seeds):
        pbt, rnd = run(seed, "truncation", args.generations), run(seed, "none", args.generations)
        rows.append((seed, pbt, rnd))
        print(
            f"seed {seed}: PBT val {pbt['best_val']:.4f} test {pbt['best_test']:.4f} "
            f"({pbt['seconds']:.1f} s) | "
            f"random best val {rnd['best_val']:.4f} test {rnd['best_test']:.4f}, "
            f"median val {rnd['median_val']:.4f} test {rnd['median_test']:.4f} ({rnd['seconds']:.1f} s)",
            flush=True,
        )

    def med(arm: int, key: str) -> float:
        return statistics.median(r[arm][key] for r in rows)

    print("\n| arm | val acc (median over seeds) | test acc (median over seeds) |")
    print("|---|---:|---:|")
    print(f"| PBT, best member | {med(1, 'best_val'):.4f} | {med(1, 'best_test'):.4f} |")
    print(f"| random search, best of 16 | {med(2, 'best_val'):.4f} | {med(2, 'best_test'):.4f} |")
    print(f"| random search, median of 16 | {med(2, 'median_val'):.4f} | {med(2, 'median_test'):.4f} |")
    wins = sum(r[1]["best_test"] > r[2]["best_test"] for r in rows)
    ties = sum(r[1]["best_test"] == r[2]["best_test"] for r in rows)
    print(f"PBT test > random best-of-16 test in {wins}/{len(rows)} seeds ({ties} ties)")
    stacked, looped = throughput()
    print(
        f"training throughput: stacked {stacked:.0f} member-steps/s, "
        f"looped {looped:.0f} ({stacked / looped:.1f}x)"
    )


if __name__ == "__main__":
    main()
