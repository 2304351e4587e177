"""Population noise throughput: the old per-member Mersenne-Twister loop vs Philox-4x32-10.

    .venv/bin/python benchmarks/noise.py                          # the benchmark sizes below
    .venv/bin/python benchmarks/noise.py --sizes 8x1000 --reps 1  # smoke run

For each ``PxD`` it prints normals per second (float32, ``[P, D]`` noise of one generation) of:

- mt-loop: what ``population_normal`` does (one CPU ``torch.Generator`` seeded per member
  with ``derive_key``, ``torch.randn`` into its row), copied to the device;
- philox-eager / philox-compiled: ``neuroevo.core.philox`` without and with ``torch.compile``
  (compile time is paid in a warm-up call and reported separately);
- randn: one ``torch.randn(P, D)`` from the global generator, the ceiling for a non-counter-based
  draw (not regenerable per member).

Ratios are against mt-loop, timed in the same process, methods interleaved, best of ``--reps``.
One thread (``torch.set_num_threads(1)``). With CUDA available the same is run on the GPU
(mt-loop there includes the host-to-device copy, as the old code did).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from neuroevo.core import philox
from neuroevo.core import random as nrandom

SIZES = "100x1000,1024x10000,256x100000,256x1000000"


def mt_loop(members: int, dim: int, device: str) -> torch.Tensor:
    """The old ``population_normal``: a CPU Mersenne-Twister generator per member, then a copy."""
    out = torch.empty((members, dim))
    for row in range(members):
        gen = nrandom.member_generator(0, 1, row, "noise")
        torch.randn((dim,), generator=gen, out=out[row])
    return out.to(device)


def philox_draw(members: int, dim: int, device: str, compiled: bool) -> torch.Tensor:
    k0, k1 = 0x9E3779B9, 0xBB67AE85  # any key: the speed does not depend on it
    ids = torch.arange(members, dtype=torch.int64, device=device)
    keys = (torch.full_like(ids, k0), torch.full_like(ids, k1), ids, torch.zeros_like(ids))
    return philox.draw("normal", *keys, dim, dtype=torch.float32, compiled=compiled)


def _time(fn: Callable[[], torch.Tensor], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(device: str, sizes: list[tuple[int, int]], reps: int) -> None:
    print(f"device {device}, float32 normals per second (millions), best of {reps}")
    print(f"{'P x D':>16} {'mt-loop':>9} {'eager':>9} {'compiled':>9} {'randn':>9}  compile s  vs mt-loop")
    for members, dim in sizes:
        methods: dict[str, Callable[[], torch.Tensor]] = {
            "mt-loop": lambda p=members, d=dim: mt_loop(p, d, device),
            "eager": lambda p=members, d=dim: philox_draw(p, d, device, False),
            "compiled": lambda p=members, d=dim: philox_draw(p, d, device, True),
            "randn": lambda p=members, d=dim: torch.randn(p, d, device=device),
        }
        warm = {name: _time(fn, device) for name, fn in methods.items()}  # compiles "compiled"
        best = {name: float("inf") for name in methods}
        for _ in range(reps):
            for name, fn in methods.items():
                best[name] = min(best[name], _time(fn, device))
        rate = {name: members * dim / seconds / 1e6 for name, seconds in best.items()}
        ratios = " ".join(f"{n} {rate[n] / rate['mt-loop']:.2f}x" for n in ("eager", "compiled", "randn"))
        print(
            f"{f'{members} x {dim}':>16} {rate['mt-loop']:9.1f} {rate['eager']:9.1f} {rate['compiled']:9.1f}"
            f" {rate['randn']:9.1f}  {warm['compiled']:9.2f}  {ratios}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=SIZES, help="comma-separated PxD")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped if absent")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    for device in args.devices.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        run(device, sizes, args.reps)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
