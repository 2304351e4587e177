"""NEAT on XOR: neuroevo vs neat-python 2.0.0, same machine, same run of this script.

Measures milliseconds per generation (evaluation + reproduction + speciation) at population
sizes 150, 1,000 and 10,000 (``--repeats`` rounds, each a fresh run of one library then the
other, or with ``--turns generation`` both taking turns generation by generation; the medians
and every round's speed-up are printed), and XOR
success rate / median
generations over N seeds
(population 150, fitness 4 - sum of squared errors, solved at >= 3.9, as neat-python's XOR
example). Both libraries get the same settings: neat-python's documented XOR example config
(written below as an INI file) with conn_delete_prob = node_delete_prob = 0 (neuroevo's
defaults); neat-python is also run with the example's own 0.5 / 0.2 deletion rates for the
success table. neuroevo uses ``activation = neat_sigmoid`` (sigmoid(4.9 z)), neat-python its
``sigmoid`` (sigmoid(5 z)).

Run in the benchmark environment:  .bench-venv/bin/python benchmarks/neat_vs_neat_python.py
Quick check:                        ... --sizes 150 --seeds 3 --time-generations 3 --repeats 1
Where neuroevo's time goes:         ... --profile --sizes 150 10000 --seeds 0 --skip-neat-python
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time

import torch

XOR_IN = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
XOR_OUT = [0.0, 1.0, 1.0, 0.0]
THRESHOLD = 3.9

INI = """
[NEAT]
fitness_criterion     = max
fitness_threshold     = {threshold}
pop_size              = {pop_size}
reset_on_extinction   = False
no_fitness_termination = {no_termination}

[DefaultGenome]
activation_default      = sigmoid
activation_mutate_rate  = 0.0
activation_options      = sigmoid
aggregation_default     = sum
aggregation_mutate_rate = 0.0
aggregation_options     = sum
bias_init_mean          = 0.0
bias_init_stdev         = 1.0
bias_max_value          = 30.0
bias_min_value          = -30.0
bias_mutate_power       = 0.5
bias_mutate_rate        = 0.7
bias_replace_rate       = 0.1
compatibility_disjoint_coefficient = 1.0
compatibility_weight_coefficient   = 0.5
conn_add_prob           = 0.5
conn_delete_prob        = {conn_delete}
enabled_default         = True
enabled_mutate_rate     = 0.01
feed_forward            = True
initial_connection      = full
node_add_prob           = 0.2
node_delete_prob        = {node_delete}
num_hidden              = 0
num_inputs              = 2
num_outputs             = 1
response_init_mean      = 1.0
response_init_stdev     = 0.0
response_max_value      = 30.0
response_min_value      = -30.0
response_mutate_power   = 0.0
response_mutate_rate    = 0.0
response_replace_rate   = 0.0
weight_init_mean        = 0.0
weight_init_stdev       = 1.0
weight_max_value        = 30
weight_min_value        = -30
weight_mutate_power     = 0.5
weight_mutate_rate      = 0.8
weight_replace_rate     = 0.1

[DefaultSpeciesSet]
compatibility_threshold = 3.0

[DefaultStagnation]
species_fitness_func = max
max_stagnation       = 20
species_elitism      = 2

[DefaultReproduction]
elitism            = 2
survival_threshold = 0.2
min_species_size   = 2
"""


# -- neat-python -----------------------------------------------------------------------------------


def neat_python_config(pop_size: int, no_termination: bool, deletions: tuple[float, float]):
    import neat

    text = INI.format(
        threshold=THRESHOLD,
        pop_size=pop_size,
        no_termination=no_termination,
        conn_delete=deletions[0],
        node_delete=deletions[1],
    )
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        return neat.Config(
            neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet, neat.DefaultStagnation, path
        )
    finally:
        os.unlink(path)


def neat_python_eval(genomes, config) -> None:
    import neat

    for _, genome in genomes:
        net = neat.nn.FeedForwardNetwork.create(genome, config)
        err = 0.0
        for xi, xo in zip(XOR_IN, XOR_OUT, strict=True):
            out = net.activate(xi)
            err += (out[0] - xo) ** 2
        genome.fitness = 4.0 - err


def neat_python_ms_per_gen(pop_size: int, generations: int, seed: int = 0) -> tuple[float, float]:
    """(wall-clock, process CPU) milliseconds per generation after one warm-up generation."""
    import neat

    random.seed(seed)
    config = neat_python_config(pop_size, True, (0.0, 0.0))
    pop = neat.Population(config)
    pop.run(neat_python_eval, 1)  # warm-up generation
    start, cpu = time.perf_counter(), time.process_time()
    pop.run(neat_python_eval, generations)
    return (
        (time.perf_counter() - start) / generations * 1000,
        (time.process_time() - cpu) / generations * 1000,
    )


def neat_python_xor(seed: int, max_generations: int, deletions: tuple[float, float]) -> int | None:
    import neat

    random.seed(seed)
    config = neat_python_config(150, False, deletions)
    pop = neat.Population(config)
    best = pop.run(neat_python_eval, max_generations)
    if best is not None and best.fitness is not None and best.fitness >= THRESHOLD:
        return pop.generation  # run() stops in the solving generation before counting it (0-based)
    return None


# -- neuroevo --------------------------------------------------------------------------------------


def neuroevo_setup(pop_size: int, seed: int):
    from neuroevo.core import memory
    from neuroevo.nn.neat import NEATPhenotype
    from neuroevo.strategies.neat import NEAT

    memory.keep_freed_memory()  # as evolve() does for every run (a process-wide setting)
    return NEATPhenotype(2, 1), NEAT(2, 1, pop_size, seed=seed)


X = torch.tensor(XOR_IN)
Y = torch.tensor(XOR_OUT)


def neuroevo_generation(phenotype, strategy) -> float:
    pop = strategy.ask()
    out = phenotype.forward(pop, X)[..., 0]
    fitness = 4.0 - ((out - Y) ** 2).sum(1)
    strategy.tell(fitness)
    return float(fitness.max())


def neuroevo_ms_per_gen(pop_size: int, generations: int, seed: int = 0) -> tuple[float, float]:
    """(wall-clock, process CPU) milliseconds per generation after one warm-up generation."""
    phenotype, strategy = neuroevo_setup(pop_size, seed)
    neuroevo_generation(phenotype, strategy)  # warm-up generation
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(generations):
        neuroevo_generation(phenotype, strategy)
    return (
        (time.perf_counter() - start) / generations * 1000,
        (time.process_time() - cpu) / generations * 1000,
    )


def interleaved_ms_per_gen(
    pop_size: int, generations: int, seed: int = 0
) -> tuple[tuple[float, float], tuple[float, float]]:
    """One round of both libraries, generation by generation (``--turns generation``): a
    neat-python generation, then a neuroevo one, ``generations`` times (after one warm-up
    generation each), so both are timed across the same minute of the host's drifting speed.
    Returns each library's
    (wall-clock, process CPU) milliseconds per generation. Garbage is collected before each
    neuroevo turn, untimed: neat-python leaves millions of objects, and collecting them inside
    neuroevo's generation would bill neuroevo for them (neat-python's own collections stay in
    its generations, as in a run of it alone)."""
    import neat

    random.seed(seed)
    np_pop = neat.Population(neat_python_config(pop_size, True, (0.0, 0.0)))
    phenotype, strategy = neuroevo_setup(pop_size, seed)
    np_pop.run(neat_python_eval, 1)  # warm-up generations
    neuroevo_generation(phenotype, strategy)
    spent = {"neat-python": [0.0, 0.0], "neuroevo": [0.0, 0.0]}
    turns = {
        "neat-python": lambda: np_pop.run(neat_python_eval, 1),
        "neuroevo": lambda: neuroevo_generation(phenotype, strategy),
    }
    for _ in range(generations):
        for name, turn in turns.items():
            if name == "neuroevo":
                gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            turn()
            spent[name][0] += time.perf_counter() - start
            spent[name][1] += time.process_time() - cpu
    ms = {name: (wall / generations * 1000, cpu / generations * 1000) for name, (wall, cpu) in spent.items()}
    return ms["neuroevo"], ms["neat-python"]


def neuroevo_xor(seed: int, max_generations: int) -> int | None:
    phenotype, strategy = neuroevo_setup(150, seed)
    for gen in range(max_generations):
        if neuroevo_generation(phenotype, strategy) >= THRESHOLD:
            return gen
    return None


PHASES = {  # (owner, method) -> phase name; nested phases are also counted in their parent
    ("strategy", "_reproduce"): "tell (all)",
    ("strategy", "_speciate"): "speciation",
    ("strategy", "distance"): "  distance",
    ("strategy", "crossover"): "crossover",
    ("strategy", "mutate"): "mutation",
    ("phenotype", "forward"): "forward (all)",
    ("phenotype", "_compile"): "  compile",
}


def neuroevo_profile(pop_size: int, generations: int, seed: int = 0) -> dict[str, float]:
    """Process-CPU milliseconds per generation of each phase (``PHASES``), after one warm-up
    generation; the timers wrap the instances' methods, so they add a few microseconds a call."""
    phenotype, strategy = neuroevo_setup(pop_size, seed)
    neuroevo_generation(phenotype, strategy)
    owners = {"strategy": strategy, "phenotype": phenotype}
    spent = dict.fromkeys(PHASES.values(), 0.0)

    def timed(method, name):
        def run(*args, **kwargs):
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start

        return run

    for (owner, attr), name in PHASES.items():
        setattr(owners[owner], attr, timed(getattr(owners[owner], attr), name))
    cpu = time.process_time()
    for _ in range(generations):
        neuroevo_generation(phenotype, strategy)
    out = {"generation": (time.process_time() - cpu) / generations * 1000}
    return out | {name: t / generations * 1000 for name, t in spent.items()}


# -- report ----------------------------------------------------------------------------------------


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The (wall, CPU ms/gen) run of median wall time (the lower middle of an even count)."""
    return sorted(runs)[(len(runs) - 1) // 2]


def summary(results: list[int | None]) -> dict[str, object]:
    solved = [g for g in results if g is not None]
    return {
        "solved": len(solved),
        "runs": len(results),
        "median_generations": statistics.median(solved) if solved else None,
        "mean_generations": round(statistics.mean(solved), 1) if solved else None,
        "max_generations": max(solved) if solved else None,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[150, 1000, 10000])
    ap.add_argument("--time-generations", type=int, default=20, help="timed generations per size (neuroevo)")
    ap.add_argument(
        "--neat-python-budget", type=float, default=60.0, help="neat-python timing seconds per size"
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="rounds per size: fresh runs of both libraries taking turns (same seed); medians are reported",
    )
    ap.add_argument(
        "--turns",
        choices=["generation", "run"],
        default="run",
        help="how the libraries take turns in a round: whole runs (each alone, as a user runs it;"
        " rounds spread with the host's phases) or generation by generation (the same stretch of"
        " the host's speed, but each runs with the other's data and code evicted from the caches)",
    )
    ap.add_argument("--seeds", type=int, default=100, help="XOR seeds per library")
    ap.add_argument("--max-generations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (neat-python is single-threaded)")
    ap.add_argument("--skip-neat-python", action="store_true")
    ap.add_argument(
        "--xor-libs", nargs="*", default=["neuroevo", "neat-python"], help="whose XOR success rate to measure"
    )
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--profile", action="store_true", help="also print neuroevo's CPU ms/gen per phase")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    have_np = not args.skip_neat_python
    if have_np:
        try:
            import neat  # noqa: F401
        except ImportError:
            print("neat-python not installed: run in .bench-venv (benchmarks/setup_env.sh)", file=sys.stderr)
            have_np = False
    out: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "timing": [],
    }
    print(
        "P, then wall-clock ms/gen (process CPU ms/gen) of each library's median round, the median"
        " of the rounds' speed-ups, and each round's"
    )
    # The host's speed drifts by 10-50% within a minute, so the libraries take turns: a round is
    # one fresh run of each (the same seed, so the same work), and its speed-up compares the
    # two; the median round is reported. Whole runs in turn (the default) time each library
    # alone, but 0.6 s of neuroevo against 50 s of neat-python at P = 10,000 can fall in
    # different phases (rounds of one run ranged 75-120x). ``--turns generation`` times both
    # over the same stretch, each with the other's data and code evicted from the caches, which
    # costs both 30-40% and neuroevo's call-bound P = 150 more (``benchmarks/RESULTS.md``).
    # Every run starts after a full garbage collection: neat-python leaves millions of objects.
    for size in args.sizes:
        gc.collect()
        neuroevo_ms_per_gen(size, 2)  # a throwaway run, like neat-python's calibration run below
        gens = 0
        if have_np:
            gc.collect()
            one = neat_python_ms_per_gen(size, 1)[0]
            gens = max(1, min(args.time_generations, int(args.neat_python_budget * 1000 / max(one, 1e-3))))
        rounds = []
        for _ in range(max(1, args.repeats)):
            gc.collect()
            if have_np and args.turns == "generation":
                rounds.append(interleaved_ms_per_gen(size, gens))
                continue
            mine = neuroevo_ms_per_gen(size, args.time_generations)
            gc.collect()
            rounds.append((mine, neat_python_ms_per_gen(size, gens) if have_np else None))
        ours = _median([r[0] for r in rounds])
        theirs = _median([r[1] for r in rounds]) if have_np else None
        ratios = [r[1][0] / r[0][0] for r in rounds] if have_np else []
        line = f"{size:>7}  neuroevo {ours[0]:9.1f} ({ours[1]:9.1f})"
        if theirs:
            line += f"  neat-python {theirs[0]:9.1f} ({theirs[1]:9.1f})  {statistics.median(ratios):6.1f}x"
            line += "  (" + " ".join(f"{x:.1f}x" for x in ratios) + ")"
        print(line, flush=True)
        out["timing"].append(
            {
                "population": size,
                "neuroevo_ms": ours[0],
                "neuroevo_cpu_ms": ours[1],
                "neat_python_ms": theirs[0] if theirs else None,
                "neat_python_cpu_ms": theirs[1] if theirs else None,
                "speedup_median": statistics.median(ratios) if ratios else None,
                "speedups": ratios,
                "rounds": len(rounds),
                "turns": args.turns,
            }
        )
    if args.profile:
        out["profile"] = {}
        for size in args.sizes:
            gc.collect()
            phases = neuroevo_profile(size, args.time_generations)
            out["profile"][size] = phases
            print(
                f"{size:>7}  neuroevo CPU ms/gen: "
                + ", ".join(f"{k.strip()} {v:.2f}" for k, v in phases.items())
            )
    if "neuroevo" in args.xor_libs:
        ours = [neuroevo_xor(seed, args.max_generations) for seed in range(args.seeds)]
        out["xor_neuroevo"] = summary(ours)
        print("XOR neuroevo:", out["xor_neuroevo"], flush=True)
    if have_np and "neat-python" in args.xor_libs:
        same = [neat_python_xor(seed, args.max_generations, (0.0, 0.0)) for seed in range(args.seeds)]
        out["xor_neat_python_same_settings"] = summary(same)
        print("XOR neat-python (same settings):", out["xor_neat_python_same_settings"], flush=True)
        example = [neat_python_xor(seed, args.max_generations, (0.5, 0.2)) for seed in range(args.seeds)]
        out["xor_neat_python_example_config"] = summary(example)
        print("XOR neat-python (example config, deletions 0.5/0.2):", out["xor_neat_python_example_config"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
