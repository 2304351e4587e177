"""Peak memory of one generation of 100,000 MLPs on digits: one batched pass vs chunks.

    .venv/bin/python benchmarks/memory_chunking.py [--population 100000] [--max-memory-gb 2]
    PYTHONPATH=/path/to/an/older/checkout/src .venv/bin/python benchmarks/memory_chunking.py

Each measurement runs in a fresh process (peak RSS only grows): OpenES asks for P members of
a 64-32-10 tanh MLP, the digits task (full training batch, 1,437 rows) evaluates them, and the
child prints its peak resident memory (``ru_maxrss``) and the wall time of the evaluation.
``--max-memory-gb 0`` evaluates in one pass (what older versions always did). The fitness
of both passes is compared bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(1)
from neuroevo.nn import PopulationMLP
from neuroevo.strategies import OpenES
from neuroevo.tasks import Digits
population, budget = int(sys.argv[1]), float(sys.argv[2])
task = Digits()
net = PopulationMLP([64, 32, 10], "tanh")
es = OpenES(net.num_params, population, init=net.init_params, sigma=0.05)
members = es.ask()
start = time.perf_counter()
try:
    from neuroevo.runtime.executor import LocalExecutor
    values = LocalExecutor(max_memory_gb=budget or None).evaluate(task, net, members, 0).values
except (ImportError, TypeError):  # a version without chunking: one pass
    values = task.evaluate(net, members, 0).values
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"peak_gb": peak, "seconds": seconds, "checksum": values.double().sum().item(),
                  "first": values[:4].tolist()}))
"""


def measure(population: int, budget: float) -> dict | None:
    """The child's figures, or None when the kernel killed it for memory (SIGKILL)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(population), str(budget)],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    if done.returncode == -9:
        return None
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(name: str, figures: dict | None) -> str:
    if figures is None:
        return f"| {name} | killed: out of memory | - |"
    return f"| {name} | {figures['peak_gb']:.2f} | {figures['seconds']:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--max-memory-gb", type=float, default=2.0)
    args = parser.parse_args()
    chunked = measure(args.population, args.max_memory_gb)
    one = measure(args.population, 0)
    print(f"P = {args.population:,}, digits, 64-32-10 MLP, one thread, {os.cpu_count()} cores")
    print("| evaluation | peak RSS (GB) | seconds |")
    print("|---|---:|---:|")
    print(_row("one batched pass", one))
    print(_row(f"chunks of <= {args.max_memory_gb:g} GB", chunked))
    if one is not None and chunked is not None:
        same = one["checksum"] == chunked["checksum"] and one["first"] == chunked["first"]
        print(f"fitness identical: {same}")


if __name__ == "__main__":
    main()
