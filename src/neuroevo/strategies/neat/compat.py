"""NEAT's compatibility distance on the CPU as compiled loops (numba), for any population size.

Speciation measures every genome against a few representatives, whose genes fall in a small
union of keys (tens at P = 10,000). Each representative's genes become a ``[union, m]``
table of slots; then each gene of each genome is looked up in the union once (a binary
search) and compared with every representative that has it, in one pass over the genome's
row. The distance is ``distance.py``'s (neat-python's form, excess counted as disjoint),
summed in float64. Compiled on first use and cached next to this file.
"""

from __future__ import annotations

import numba
import numpy as np

from neuroevo.nn.neat.genes import PAD


@numba.njit(cache=True, nogil=True)
def _slots(b_key, b_count):  # pragma: no cover
    """The sorted union of the representatives' keys and ``[union, m]``: each one's slot of
    each key (-1 where it lacks it)."""
    m = b_key.shape[0]
    total = 0
    for j in range(m):
        total += b_count[j]
    keys = np.empty(total, b_key.dtype)
    t = 0
    for j in range(m):
        for s in range(b_count[j]):
            keys[t] = b_key[j, s]
            t += 1
    union = np.unique(keys)
    slot = np.full((union.shape[0], m), -1, np.int64)
    for j in range(m):
        for s in range(b_count[j]):
            slot[np.searchsorted(union, b_key[j, s]), j] = s
    return union, slot


@numba.njit(cache=True, nogil=True)
def _part(i, s, union, a_key):  # pragma: no cover
    """Row of a's gene ``(i, s)`` in the union, or -1."""
    key = a_key[i, s]
    if key == PAD or union.shape[0] == 0:
        return -1
    u = np.searchsorted(union, key)
    return u if u < union.shape[0] and union[u] == key else -1


@numba.njit(cache=True, nogil=True)
def add_part(a, a_count, b, b_count, use, cd, cw, out):  # pragma: no cover
    """``out[i, j] +=`` one gene kind's part of the distance of genome i of a to genome j of b:
    ``(cd * disjoint + cw * sum over matching genes of their difference) / max genes``.

    ``a`` and ``b`` are (key, x, y, c, d) tables; matching genes differ by ``|x difference|``
    plus, where ``use`` says so, ``|y difference|``, ``[c differs]``, ``[d differs]``: nodes
    are (key, bias, response, activation, aggregation), connections (innovation, weight, -,
    enabled, -)."""
    a_key, a_x, a_y, a_c, a_d = a
    b_key, b_x, b_y, b_c, b_d = b
    union, slot = _slots(b_key, b_count)
    n, m = out.shape
    acc = np.zeros(m)
    same = np.zeros(m, np.int64)
    for i in range(n):
        acc[:] = 0.0
        same[:] = 0
        for s in range(a_count[i]):
            u = _part(i, s, union, a_key)
            if u < 0:
                continue
            for j in range(m):
                t = slot[u, j]
                if t >= 0:
                    same[j] += 1
                    diff = abs(np.float64(a_x[i, s]) - np.float64(b_x[j, t]))
                    if use[0]:
                        diff += abs(np.float64(a_y[i, s]) - np.float64(b_y[j, t]))
                    if use[1]:
                        diff += a_c[i, s] != b_c[j, t]
                    if use[2]:
                        diff += a_d[i, s] != b_d[j, t]
                    acc[j] += diff
        for j in range(m):
            na, nb = a_count[i], b_count[j]
            out[i, j] += (cd * (na + nb - 2 * same[j]) + cw * acc[j]) / max(na, nb, 1)


__all__ = ["add_part"]
