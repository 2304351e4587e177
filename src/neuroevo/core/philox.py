"""Philox-4x32-10 as vectorised tensor integer ops (Salmon et al. 2011, "Parallel random numbers: as
easy as 1, 2, 3"), the counter-based generator of Random123, cuRAND, JAX and EvoX.

A block is a function of a 4x32-bit counter and a 2x32-bit key only, so any element of any stream
can be computed alone, in any order, on any device. Unsigned 32-bit words live in ``int64`` tensors
(values in ``[0, 2**32)``); the 32x32->64 products of a round are one ``int64`` multiply, whose
low 64 bits are exact (the product is below ``2**64``, and two's-complement multiplication wraps),
so ``& 0xFFFFFFFF`` gives ``mullo`` and ``(p >> 32) & 0xFFFFFFFF`` gives ``mulhi``.

Streams here: a row ``r`` of ``n`` outputs has key ``(k0[r], k1[r])`` and counter
``(block & M32, block >> 32, c2[r], c3[r])`` for ``block = 0, 1, ...``, laid out in tiles of
``TILE`` blocks (all first outputs of a tile's blocks, then all second outputs, ...), a layout
that inductor fuses into one loop. Normals come from the Box-Muller transform (Box and Muller 1958) of
those words: float32 takes 24 bits per uniform (4 normals per block), float64 53 bits (2 per block).
``log``, ``sin`` and ``cos`` are evaluated here from integer bit operations and correctly rounded
``+ - * / sqrt`` (no library transcendental, whose last bit differs between vectorised and scalar
code), so a draw is bit-identical eager or compiled, and whichever rows or chunks it is drawn with.
On CUDA the ops run eager (each op one kernel, so no fused multiply-add), which makes CUDA
draws bit-identical to the CPU's too.
"""

from __future__ import annotations

import math

import torch

from neuroevo.core.compile import compile_enabled, maybe_compile

M32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53  # multiplier of words 0/1 (Salmon et al. 2011, table 2)
PHILOX_M1 = 0xCD9E8D57  # multiplier of words 2/3
PHILOX_W0 = 0x9E3779B9  # key bump of k0 (golden ratio)
PHILOX_W1 = 0xBB67AE85  # key bump of k1 (sqrt(3) - 1)
ROUNDS = 10

# tiles per eager chunk: the eager rounds keep ~12 int64 temporaries alive, 64 tiles keep them in L2
_EAGER_CHUNK_TILES = 64
# tiles per chunk on an accelerator: 2**22 blocks, ~32 MiB per int64 temporary
_DEVICE_CHUNK_TILES = 1 << 14


def philox4x32(
    c0: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    c3: torch.Tensor,
    k0: torch.Tensor,
    k1: torch.Tensor,
    rounds: int = ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four output words of Philox-4x32-``rounds`` for broadcastable int64 word tensors."""
    for r in range(rounds):
        if r:
            k0 = (k0 + PHILOX_W0) & M32
            k1 = (k1 + PHILOX_W1) & M32
        p0 = c0 * PHILOX_M0
        p1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = (
            ((p1 >> 32) & M32) ^ c1 ^ k0,
            p1 & M32,
            ((p0 >> 32) & M32) ^ c3 ^ k1,
            p0 & M32,
        )
    return c0, c1, c2, c3


TILE = 256  # blocks per tile: a tile of a row holds word 0 of its 256 blocks, then word 1, ...


def _words(
    k0: torch.Tensor, k1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, start: int, tiles: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Words ``[R, tiles, TILE]`` of tiles ``start ..`` of rows ``[R, 1, 1]`` (keys, high counter words)."""
    block = torch.arange(start * TILE, (start + tiles) * TILE, dtype=torch.int64, device=k0.device)
    block = block.view(1, tiles, TILE)
    return philox4x32(block & M32, block >> 32, c2, c3, k0, k1)


def _interleave(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``[R, tiles, TILE]`` parts as rows ``[R, tiles * len(parts) * TILE]``, tile by tile.

    Whole tiles (not single words) are interleaved so that inductor writes every part from one
    fused loop into contiguous runs; a stride-4 interleave recomputes the rounds per output.
    """
    return torch.stack(parts, dim=2).flatten(1)


def _horner(z: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    out = torch.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * z + c
    return out


# Taylor coefficients: atanh series 1/(2k+1) for log, 1/n! with alternating signs for sin and cos
_LOG_TERMS = {torch.float32: 6, torch.float64: 12}
_SIN_TERMS = {torch.float32: 6, torch.float64: 10}
_COS_TERMS = {torch.float32: 6, torch.float64: 11}
_FLOAT_BITS = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}


def _log_of_integer(v: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """``log(v * 2**-bits)`` for integers ``v`` in ``[1, 2**bits]``, from +, *, / and bit operations only.

    ``v = m * 2**e`` with ``m`` in ``[sqrt(2)/2, sqrt(2))`` read off the float's bits; ``log(m)`` is the
    atanh series ``2 atanh(s)``, ``s = (m - 1) / (m + 1)``. Every operation is correctly rounded IEEE
    arithmetic, so the result is the same bit pattern eager, compiled, and wherever a row is drawn.
    """
    itype, mbits, bias = _FLOAT_BITS[dtype]
    raw = v.to(dtype).view(itype)  # exact: v <= 2**bits fits the mantissa
    exponent = (raw >> mbits) - bias
    m = ((raw & ((1 << mbits) - 1)) | (bias << mbits)).view(dtype)  # in [1, 2)
    big = m > math.sqrt(2.0)
    m = torch.where(big, m * 0.5, m)
    exponent = exponent + big.to(exponent.dtype) - bits
    f = m - 1.0
    t = f / (f + 2.0)
    series = _horner(t * t, tuple(1.0 / (2 * k + 1) for k in range(_LOG_TERMS[dtype])))
    return exponent.to(dtype) * math.log(2.0) + 2.0 * t * series


def _sincos_of_turn(w: torch.Tensor, bits: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``sin, cos`` of ``2 pi w 2**-bits`` for integers ``w`` in ``[0, 2**bits)``.

    The reduction to ``[-pi/4, pi/4]`` is exact integer arithmetic on ``w`` (nearest quarter turn),
    then Taylor polynomials; only correctly rounded operations, as in ``_log_of_integer``.
    """
    quarter = 1 << (bits - 2)
    k = (w + (quarter >> 1)) >> (bits - 2)
    x = (w - k * quarter).to(dtype) * (2.0 * math.pi / (1 << bits))
    z = x * x
    sin = x * _horner(z, tuple((-1) ** j / math.factorial(2 * j + 1) for j in range(_SIN_TERMS[dtype])))
    cos = _horner(z, tuple((-1) ** j / math.factorial(2 * j) for j in range(_COS_TERMS[dtype])))
    q = k & 3
    odd = (q & 1) == 1
    s, c = torch.where(odd, cos, sin), torch.where(odd, sin, cos)
    return torch.where(q >= 2, -s, s), torch.where((q == 1) | (q == 2), -c, c)


_RSQRT_MAGIC = {torch.float32: (0x5F3759DF, 3), torch.float64: (0x5FE6EB50C7B537A9, 4)}


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` as ``x / sqrt(x)``, by Newton's iteration for ``1 / sqrt(x)`` from the
    exponent-halving bit seed (multiplies only).

    Deterministic by construction (``torch.sqrt`` on the CPU is not correctly rounded, and its last
    bit differs between eager and compiled code); relative error about one unit in the last place.
    """
    itype, _, _ = _FLOAT_BITS[x.dtype]
    magic, steps = _RSQRT_MAGIC[x.dtype]
    y = (magic - (x.view(itype) >> 1)).view(x.dtype)  # within ~4% of 1 / sqrt(x)
    half = 0.5 * x
    for _ in range(steps):
        y = y * (1.5 - half * y * y)
    return x * y


def _box_muller(
    v: torch.Tensor, w: torch.Tensor, bits: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent standard normals from integers ``v`` in [1, 2**bits] (u1 = v 2**-bits, in (0, 1])
    and ``w`` in [0, 2**bits) (u2): ``sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2)`` (Box and Muller 1958)."""
    radius = _sqrt(-2.0 * _log_of_integer(v, bits, dtype))
    sin, cos = _sincos_of_turn(w, bits, dtype)
    return radius * cos, radius * sin


def _normal32(k0, k1, c2, c3, start: int, tiles: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """float32 normals, 4 per block; 24 bits per uniform."""
    x0, x1, x2, x3 = _words(k0, k1, c2, c3, start, tiles)
    a0, a1 = _box_muller((x0 >> 8) + 1, x1 >> 8, 24, torch.float32)
    b0, b1 = _box_muller((x2 >> 8) + 1, x3 >> 8, 24, torch.float32)
    return _interleave((a0, a1, b0, b1))


def _normal64(k0, k1, c2, c3, start: int, tiles: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """float64 normals, 2 per block; 53 bits per uniform."""
    x0, x1, x2, x3 = _words(k0, k1, c2, c3, start, tiles)
    a, b = _box_muller(((x0 << 21) | (x1 >> 11)) + 1, (x2 << 21) | (x3 >> 11), 53, torch.float64)
    return _interleave((a, b))


def _uniform32(k0, k1, c2, c3, start: int, tiles: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """float32 uniforms in [0, 1), 4 per block; 24 bits each."""
    words = _words(k0, k1, c2, c3, start, tiles)
    return _interleave(tuple((x >> 8).to(torch.float32) * 2.0**-24 for x in words))


def _uniform64(k0, k1, c2, c3, start: int, tiles: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """float64 uniforms in [0, 1), 2 per block; 53 bits each."""
    x0, x1, x2, x3 = _words(k0, k1, c2, c3, start, tiles)
    a = ((x0 << 21) | (x1 >> 11)).to(torch.float64) * 2.0**-53
    b = ((x2 << 21) | (x3 >> 11)).to(torch.float64) * 2.0**-53
    return _interleave((a, b))


def _bits32(k0, k1, c2, c3, start: int, tiles: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Raw words (int64 holding uint32), 4 per block."""
    return _interleave(_words(k0, k1, c2, c3, start, tiles))


_KINDS = {
    ("normal", torch.float32): (_normal32, 4),
    ("normal", torch.float64): (_normal64, 2),
    ("uniform", torch.float32): (_uniform32, 4),
    ("uniform", torch.float64): (_uniform64, 2),
    ("bits", torch.int64): (_bits32, 4),
}
_COMPILED: dict[tuple[str, torch.dtype, str], object] = {}


def _use_compiled(device: torch.device, total: int) -> bool:
    """Compile large CPU draws only: a small draw is cheaper eager than a compiled call's overhead, and
    on CUDA the compiler fuses multiply-adds (changing the last bit), while eager kernels round every
    operation as the CPU does, so eager CUDA draws are bit-identical to the CPU's."""
    return device.type == "cpu" and compile_enabled() and total >= 1 << 16


def _kernel(kind: str, dtype: torch.dtype, device: torch.device, compiled: bool):  # type: ignore[no-untyped-def]
    fn, _ = _KINDS[(kind, dtype)]
    if not compiled:
        return fn
    key = (kind, dtype, device.type)
    if key not in _COMPILED:
        _COMPILED[key] = maybe_compile(fn, name=f"philox {kind} {dtype}", device=device.type, dynamic=True)
    return _COMPILED[key]


def draw(
    kind: str,
    k0: torch.Tensor,
    k1: torch.Tensor,
    c2: torch.Tensor,
    c3: torch.Tensor,
    n: int,
    *,
    dtype: torch.dtype,
    compiled: bool | None = None,
) -> torch.Tensor:
    """``[R, n]`` draws of ``kind`` ("normal", "uniform", "bits") for rows with words ``[R]`` each.

    Output ``j`` of row ``r`` depends on ``(k0[r], k1[r], c2[r], c3[r], j)`` only (and on the dtype),
    so a row, or any prefix of it, is the same whichever other rows are drawn with it: with ``q``
    outputs per block, ``j`` is part ``(j mod q TILE) // TILE`` of block ``TILE (j // q TILE) + j mod TILE``.
    ``compiled=None`` compiles large draws (``maybe_compile``; eager fallback); ``False`` is eager.
    """
    if (kind, dtype) not in _KINDS:
        raise ValueError(f"philox: no {kind} draws of dtype {dtype}")
    _, per_block = _KINDS[(kind, dtype)]
    rows = int(k0.shape[0])
    device = k0.device
    k0, k1, c2, c3 = (w.reshape(rows, 1, 1).to(torch.int64) for w in (k0, k1, c2, c3))
    per_tile = per_block * TILE
    tiles = -(-int(n) // per_tile)
    if compiled is None:
        compiled = _use_compiled(device, rows * tiles * per_tile)
    if compiled:  # one fused loop; inductor keeps the rounds in registers
        # at least 2 rows and 2 tiles: torch.compile specialises sizes 0 and 1, which would compile again
        # (and always fresh tensors, never views, or a view input's guards would compile again too)
        pad = max(0, 2 - rows)
        words = [torch.cat([w, w[:1].expand(pad, 1, 1)]) for w in (k0, k1, c2, c3)]
        out = _kernel(kind, dtype, device, True)(*words, 0, max(tiles, 2))
        return out[:rows, :n] if out.shape != (rows, n) else out
    fn = _kernel(kind, dtype, device, False)
    out = torch.empty((rows, tiles * per_tile), dtype=dtype, device=device)
    chunk = _EAGER_CHUNK_TILES if device.type == "cpu" else _DEVICE_CHUNK_TILES
    width = max(1, min(tiles, chunk))
    height = max(1, chunk // width)
    for top in range(0, rows, height):
        bottom = min(rows, top + height)
        rk0, rk1, rc2, rc3 = (w[top:bottom] for w in (k0, k1, c2, c3))
        for start in range(0, tiles, width):
            size = min(width, tiles - start)
            piece = fn(rk0, rk1, rc2, rc3, start, size)
            out[top:bottom, start * per_tile : (start + size) * per_tile] = piece
    return out[:, :n]
