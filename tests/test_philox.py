"""Philox-4x32-10 against a scalar reference written from Salmon et al. 2011 (pure Python ints)."""

from __future__ import annotations

import math

import pytest
import torch

from neuroevo.core import philox

M32 = 0xFFFFFFFF


def ref_philox4x32_10(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Philox-4x32-10 exactly as in the paper: S-box of two mulhilo's, Feistel-like permutation."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:  # key schedule: Weyl sequence bumps before rounds 2..10
            k0 = (k0 + 0x9E3779B9) & M32
            k1 = (k1 + 0xBB67AE85) & M32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        hi0, lo0 = p0 >> 32, p0 & M32
        hi1, lo1 = p1 >> 32, p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


# Random123 kat_vectors: philox4x32 10 rounds
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32, M32, M32, M32), (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_reference_matches_random123_known_answers(ctr, key, expected):
    assert ref_philox4x32_10(ctr, key) == expected


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_tensor_philox_matches_known_answers(ctr, key, expected):
    words = [torch.tensor([v], dtype=torch.int64) for v in (*ctr, *key)]
    assert tuple(int(w) for w in philox.philox4x32(*words)) == expected


def _ref_block(k0: int, k1: int, c2: int, c3: int, block: int) -> tuple[int, int, int, int]:
    return ref_philox4x32_10((block & M32, block >> 32, c2, c3), (k0, k1))


def _ref_position(j: int, per_block: int) -> tuple[int, int]:
    """(block, part) of output ``j``: tiles of TILE blocks, each holding part 0 of all its blocks first."""
    tile, within = divmod(j, per_block * philox.TILE)
    part, offset = divmod(within, philox.TILE)
    return tile * philox.TILE + offset, part


def _ref_bits(row: tuple[int, int, int, int], n: int) -> list[int]:
    out = []
    for j in range(n):
        block, part = _ref_position(j, 4)
        out.append(_ref_block(*row, block)[part])
    return out


def _ref_normals(row: tuple[int, int, int, int], n: int, dtype: torch.dtype) -> list[float]:
    """Box-Muller of the reference words, in float64 (compared to the tensor path at float tolerance)."""
    out = []
    for j in range(n):
        if dtype == torch.float32:
            block, part = _ref_position(j, 4)
            w = _ref_block(*row, block)[2 * (part // 2) : 2 * (part // 2) + 2]
            u1, u2 = ((w[0] >> 8) + 1) * 2.0**-24, (w[1] >> 8) * 2.0**-24
            sin = part % 2
        else:
            block, sin = _ref_position(j, 2)
            w = _ref_block(*row, block)
            u1 = (((w[0] << 21) | (w[1] >> 11)) + 1) * 2.0**-53
            u2 = ((w[2] << 21) | (w[3] >> 11)) * 2.0**-53
        r = math.sqrt(-2.0 * math.log(u1))
        out.append(r * (math.sin if sin else math.cos)(2 * math.pi * u2))
    return out


ROWS = [(0, 0, 0, 0), (0xA4093822, 0x299F31D0, 7, 0), (M32, 1, 3, M32), (12345, 678, 0xFFFFFFF0, 5)]


def _row_words(rows):
    return [torch.tensor([r[i] for r in rows], dtype=torch.int64) for i in range(4)]


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])  # compiling: ~20 s
def test_stream_bits_match_reference_across_tiles_and_high_counters(compiled):
    n = 4 * philox.TILE + 37  # two tiles, the second partial
    got = philox.draw("bits", *_row_words(ROWS), n, dtype=torch.int64, compiled=compiled)
    for row, ref in zip(got.tolist(), ROWS, strict=True):
        assert row == _ref_bits(ref, n)
    # block counters above 2**32 go into the second counter word
    start = (1 << 32) // philox.TILE + 1
    words = philox._words(*(torch.tensor(v).view(1, 1, 1) for v in ROWS[1]), start, 1)
    expected = _ref_block(*ROWS[1], start * philox.TILE)
    assert tuple(int(w[0, 0, 0]) for w in words) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])  # compiling: ~10 s
def test_normals_are_box_muller_of_the_reference_bits(dtype, compiled):
    n = 2 * philox.TILE * (4 if dtype == torch.float32 else 2) - 5  # not a whole tile
    got = philox.draw("normal", *_row_words(ROWS), n, dtype=dtype, compiled=compiled)
    assert got.dtype == dtype and got.shape == (len(ROWS), n)
    tol = 2e-6 if dtype == torch.float32 else 1e-14
    for row, ref in zip(got, ROWS, strict=True):
        expected = torch.tensor(_ref_normals(ref, n, dtype), dtype=torch.float64)
        assert torch.allclose(row.double(), expected, rtol=tol, atol=tol)


def test_compiled_and_eager_give_identical_draws():
    rows = _row_words(ROWS)
    for kind, dtype in [("normal", torch.float32), ("normal", torch.float64), ("uniform", torch.float32)]:
        a = philox.draw(kind, *rows, 1001, dtype=dtype, compiled=False)
        b = philox.draw(kind, *rows, 1001, dtype=dtype, compiled=True)
        assert torch.equal(a, b), (kind, dtype)


def test_eager_chunking_does_not_change_the_stream(monkeypatch):
    rows = _row_words(ROWS)
    whole = philox.draw("normal", *rows, 5000, dtype=torch.float32, compiled=False)
    monkeypatch.setattr(philox, "_EAGER_CHUNK_TILES", 1)
    assert torch.equal(philox.draw("normal", *rows, 5000, dtype=torch.float32, compiled=False), whole)


def test_normal_moments():
    rows = _row_words(ROWS)
    z = philox.draw("normal", *rows, 100_000, dtype=torch.float32).double()
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    z64 = philox.draw("normal", *rows, 100_000, dtype=torch.float64)
    assert abs(float(z64.mean())) < 0.01 and abs(float(z64.std()) - 1.0) < 0.01
    # fourth moment of N(0, 1) is 3: catches a wrong transform that has the right variance
    assert abs(float((z**4).mean()) - 3.0) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_bits_on_cpu_and_cuda():
    rows = _row_words(ROWS)
    for kind, dtype in [("bits", torch.int64), ("normal", torch.float32), ("normal", torch.float64)]:
        cpu = philox.draw(kind, *rows, 4096, dtype=dtype)
        gpu = philox.draw(kind, *(w.cuda() for w in rows), 4096, dtype=dtype)
        assert gpu.device.type == "cuda"
        assert torch.equal(cpu, gpu.cpu())  # only correctly rounded float ops: the same bits
