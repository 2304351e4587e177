import os
import subprocess
import sys

import pytest
import torch

from neuroevo.core import centered_rank, derive_key, population_normal
from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.core.registry import Registry


def test_keys_differ_per_field_and_are_stable():
    keys = {
        derive_key(0, 0, 0, "noise"),
        derive_key(1, 0, 0, "noise"),
        derive_key(0, 1, 0, "noise"),
        derive_key(0, 0, 1, "noise"),
        derive_key(0, 0, 0, "init"),
    }
    assert len(keys) == 5
    assert derive_key(7, 3, 2, "noise") == derive_key(7, 3, 2, "noise")
    assert all(0 <= k < 2**63 for k in keys)


def test_any_member_noise_regenerates_alone():
    block = population_normal(range(6), (3, 4), seed=5, generation=2, purpose="noise")
    alone = nrandom.normal((3, 4), seed=5, generation=2, member=4, purpose="noise")
    assert torch.equal(block[4], alone)
    again = population_normal([4, 1], (3, 4), seed=5, generation=2, purpose="noise")
    assert torch.equal(again[0], block[4]) and torch.equal(again[1], block[1])
    assert not torch.equal(block[0], block[1])


def test_noise_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    population_normal(4, 10, seed=1, generation=0)
    assert torch.equal(torch.rand(3), expected)


def test_centered_rank_range_and_order():
    f = torch.tensor([3.0, -1.0, 10.0, 0.5])
    r = centered_rank(f)
    assert torch.allclose(r, torch.tensor([1 / 6, -0.5, 0.5, -1 / 6]))


def test_registry_errors_list_allowed():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1, aliases=("alpha",))
    assert reg.get("ALPHA") == 1
    with pytest.raises(ConfigError, match="unknown thing 'b'; allowed: a"):
        reg.get("b")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 2)


_FAULTS = """
import resource, sys, torch
torch.set_num_threads(1)
from neuroevo.core import memory
memory.configure(sys.argv[1] == "keep")
memory.keep_freed_memory()  # what evolve() does once per process, unless switched off
faults = []
for generation in range(8):  # multi-MiB temporaries that grow each generation, as NEAT's gene tables do
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones((1 << 20) + generation * (1 << 16)) for _ in range(12)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
print(memory._state["applied"], sum(faults[2:]))
"""


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.skipif(_huge_pages_always(), reason="transparent huge pages = always: faults count 2 MiB pages")
def test_keep_freed_memory_cuts_page_faults_and_can_be_switched_off():
    """glibc maps each block that outgrows its adaptive threshold afresh (every page faults);
    with the thresholds raised, freed heap is reused and only the growth faults."""

    def faults(mode: str, **env: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        ).stdout.split()
        return out[0], int(out[1])

    applied, kept = faults("keep")
    _, default = faults("default")
    refused, switched_off = faults("keep", NEUROEVO_KEEP_FREED_MEMORY="0")
    assert applied == "True" and refused == "False"
    assert kept * 5 < default, (kept, default)  # 15-20x fewer here
    assert kept * 5 < switched_off, (kept, switched_off)


def test_member_keys_equal_derive_key():
    members = [0, 1, 7, 1023, 2**40 + 3, 2**63 + 5, -1]
    for seed, generation, purpose in ((0, 0, "noise"), (2**62 + 9, 2**35, "init"), (-3, 7, "")):
        assert nrandom.member_keys(seed, generation, members, purpose) == [
            derive_key(seed, generation, m, purpose) for m in members
        ]
    for members in (range(0), range(64), range(3, 40, 4), range(2**40, 2**40 + 5)):
        assert nrandom.member_keys(5, 9, members, "noise") == [derive_key(5, 9, m, "noise") for m in members]


def test_population_normal_rows_equal_fresh_generators_and_fill_out():
    for dtype in (torch.float32, torch.float64):
        for shape in ((1,), (15,), (16,), (100,), (3, 7)):
            block = population_normal([3, 0, 9], shape, seed=4, generation=6, dtype=dtype)
            for row, m in zip(block, (3, 0, 9), strict=True):
                ref = torch.randn(shape, generator=nrandom.member_generator(4, 6, m, "noise"), dtype=dtype)
                assert torch.equal(row, ref)
            out = torch.full((3, *shape), float("nan"), dtype=dtype)
            assert population_normal([3, 0, 9], shape, seed=4, generation=6, dtype=dtype, out=out) is out
            assert torch.equal(out, block)


@pytest.mark.parametrize("shape", [(0, 5), (7, 0), (40, 13), (1, 1)])
def test_hostops_equal_the_torch_ops(shape):
    """The NumPy-backed ops give torch's exact results, on strided views too."""
    from neuroevo.core.hostops import argsort_stable, flatnonzero

    g = torch.Generator().manual_seed(sum(shape))
    keys = torch.randint(0, 5, shape, generator=g)  # many ties: stability matters
    mask = keys > 2
    for m in (mask, mask.T, mask[:, ::2]):
        assert torch.equal(flatnonzero(m), m.reshape(-1).nonzero().squeeze(1))
    for t in (keys, keys.T, keys.to(torch.int16), keys.float()):
        for dim in (0, 1):
            assert torch.equal(argsort_stable(t, dim), torch.argsort(t, dim=dim, stable=True))
