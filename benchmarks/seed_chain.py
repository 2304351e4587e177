"""Compression of seed-chain genomes (Deep GA, Such et al. 2017) for a 1M-parameter network.

    .venv/bin/python benchmarks/seed_chain.py                       # 100 and 1,000 generations
    .venv/bin/python benchmarks/seed_chain.py --generations 100 1000 --population 4

A ``SeedGA`` (truncation selection, one elite, constant mutation power) evolves an MLP
784-1024-192-10 (1,002,570 float32 parameters) on a cheap linear objective (the sum of the
first 4,096 weights), so the benchmark measures the genome, not a task: almost every
generation a child beats the elite, so the best lineage is mutated about once per
generation, the worst case for chain length (at most G + 1 seeds after G generations).
After G generations it reports, for the best member:

- ``chain``: seeds in its chain (1 initialiser seed + one per mutation in its lineage);
- ``ratio (binary)``: bytes of its float32 weights / bytes of the chain stored as int64
  seeds plus one float32 sigma (our seeds are 63-bit counter-based keys, 8 bytes each);
- ``ratio (JSON)``: the same against the JSON genome ``neuroevo`` exports (``best_genome``:
  seeds, sigma, size, dtype and the phenotype spec, as written by ``json.dumps``);
- ``rebuild s``: seconds for ``reconstruct(best_genome)``, checked bit-identical to the
  weights that were evaluated;
- ``state JSON``: size of the whole strategy checkpoint (every member's chain), against
  ``P x 4 MB`` for a checkpoint of the weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from neuroevo.nn import PopulationMLP
from neuroevo.strategies import SeedGA, reconstruct


def run(generations: int, population: int, seed: int) -> dict[str, float]:
    net = PopulationMLP([784, 1024, 192, 10], activation="relu")
    strategy = SeedGA(
        net.num_params,
        population,
        init=net,
        truncation=max(1, population // 2),
        elites=1,
        mutation_power=0.002,
        reeval_streams=0,
        seed=seed,
    )
    start = time.perf_counter()
    for _ in range(generations):
        pop = strategy.ask()
        strategy.tell(pop[:, :4096].sum(1))
    evolve_s = time.perf_counter() - start
    genome = strategy.best_genome
    seeds = len(genome["seeds"])
    weight_bytes = 4 * net.num_params
    chain_bytes = 8 * seeds + 4
    json_bytes = len(json.dumps(genome).encode())
    start = time.perf_counter()
    rebuilt = reconstruct(genome)
    rebuild_s = time.perf_counter() - start
    if not torch.equal(rebuilt, strategy.best.params):
        raise SystemExit("reconstructed weights differ from the evaluated ones")
    state_bytes = len(json.dumps(strategy.state_dict()).encode())
    return {
        "generations": generations,
        "params": net.num_params,
        "chain": seeds,
        "longest": max(len(c) for c in strategy.chains),
        "weight_bytes": weight_bytes,
        "chain_bytes": chain_bytes,
        "ratio_binary": weight_bytes / chain_bytes,
        "json_bytes": json_bytes,
        "ratio_json": weight_bytes / json_bytes,
        "rebuild_s": rebuild_s,
        "evolve_s": evolve_s,
        "state_json_bytes": state_bytes,
        "state_weights_bytes": population * weight_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# seed-chain compression: torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print(f"# population {args.population}, {args.threads} thread(s)\n")
    print(
        "| generations | params | chain (seeds) | longest in population | weights bytes | chain bytes "
        "| ratio (binary) | JSON genome bytes | ratio (JSON) | rebuild s | state JSON / weights checkpoint |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for g in args.generations:
        r = run(g, args.population, args.seed)
        print(
            f"| {g:,} | {r['params']:,} | {r['chain']:,} | {r['longest']:,} | {r['weight_bytes']:,} "
            f"| {r['chain_bytes']:,} | {r['ratio_binary']:,.0f}x | {r['json_bytes']:,} "
            f"| {r['ratio_json']:,.0f}x | {r['rebuild_s']:.2f} "
            f"| {r['state_json_bytes']:,} B / {r['state_weights_bytes']:,} B |",
            flush=True,
        )


if __name__ == "__main__":
    main()
