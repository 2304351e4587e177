"""NEAT on XOR: this tree's neuroevo against another git revision's, taking turns generation by generation.

The host's speed drifts by up to 1.5x within minutes, more than most changes gain, so two
separate runs cannot tell a 5% change. Here each revision runs in its own worker process
(``PYTHONPATH`` = its ``src``), and the two take turns, one generation each, for ``--gens``
generations of the same seed after one warm-up generation; a round's ratio compares the two
sums. Only one worker computes at a time. The median of the rounds' ratios is printed (new /
old: below 1 is faster).

    PYTHONPATH=src .venv/bin/python benchmarks/neat_ab.py --old fd0620c --size 10000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {bench!r})
import neat_vs_neat_python as b
phenotype, strategy = b.neuroevo_setup({size}, {seed})
b.neuroevo_generation(phenotype, strategy)  # warm-up
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    b.neuroevo_generation(phenotype, strategy)
    print(time.perf_counter() - start, flush=True)
"""


def worker(src: Path, size: int, seed: int) -> subprocess.Popen:
    code = WORKER.format(bench=str(ROOT / "benchmarks"), size=size, seed=seed)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def step(proc: subprocess.Popen) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("gen\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="git revision to compare this tree's src/ against")
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--gens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.old, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {"old": Path(tmp) / "src", "new": ROOT / "src"}
        ratios, per = [], {"old": [], "new": []}
        for r in range(args.rounds):
            procs = {name: worker(src, args.size, args.seed) for name, src in trees.items()}
            spent = dict.fromkeys(procs, 0.0)
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for _ in range(args.gens):
                for name in order:
                    spent[name] += step(procs[name])
            for proc in procs.values():
                proc.stdin.close()
                proc.wait()
            ms = {name: t / args.gens * 1000 for name, t in spent.items()}
            for name in ms:
                per[name].append(ms[name])
            ratios.append(ms["new"] / ms["old"])
            print(
                f"round {r}: old {ms['old']:.2f} new {ms['new']:.2f} ms/gen, new/old {ratios[-1]:.3f}",
                flush=True,
            )
    out = {
        "old": args.old,
        "size": args.size,
        "old_ms": statistics.median(per["old"]),
        "new_ms": statistics.median(per["new"]),
        "ratio_median": statistics.median(ratios),
    }
    print(
        f"median: old {out['old_ms']:.2f} new {out['new_ms']:.2f} ms/gen, new/old {out['ratio_median']:.3f}"
    )
    return out


if __name__ == "__main__":
    main()
