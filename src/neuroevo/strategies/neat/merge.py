"""Crossover's gene alignment on the CPU as compiled loops (numba): one merge walk per child.

Both parents' rows are sorted by key with ``PAD`` last, so a child's primary row is aligned
with its secondary row by walking the two at once, and every attribute choice is made in the
same pass over the row (the tensor form in ``crossover.py`` makes a dozen passes over whole
tables: a search, gathers, comparisons, ``where``). The random numbers are drawn by the caller
from the strategy's torch generator in the tensor form's order and shapes, so both forms make
the same children. Compiled on first use and cached next to this file (``cache=True``); numba
is imported only then.
"""

from __future__ import annotations

import numba
import numpy as np

from neuroevo.nn.neat.genes import PAD


@numba.njit(cache=True, nogil=True)
def conn_genes(innov, weight, enabled, primary, secondary, draw, out_weight):  # pragma: no cover
    """Children's connection weights into ``out_weight[K, C]`` (a matching gene takes the
    secondary parent's weight where ``draw < 0.5``); returns the flat slots of live genes
    disabled in either parent (their enabled flag is drawn again)."""
    k, c = out_weight.shape
    redraw = np.empty(k * c, np.int64)
    m = 0
    for i in range(k):
        p, q, j = primary[i], secondary[i], 0
        for s in range(c):
            key, w = innov[p, s], weight[p, s]
            if key != PAD:
                while j < c - 1 and innov[q, j] < key:
                    j += 1
                match = innov[q, j] == key
                if match and draw[i, s] < 0.5:
                    w = weight[q, j]
                if not enabled[p, s] or (match and not enabled[q, j]):
                    redraw[m] = i * c + s
                    m += 1
            out_weight[i, s] = w
    return redraw[:m]


@numba.njit(cache=True, nogil=True)
def node_matches(key, primary, secondary, out_slot):  # pragma: no cover
    """``out_slot[K, N]``: the secondary parent's slot of each of the primary's node genes
    (-1 where it has none, and for empty slots)."""
    k, n = out_slot.shape
    for i in range(k):
        p, q, j = primary[i], secondary[i], 0
        for s in range(n):
            kk = key[p, s]
            out_slot[i, s] = -1
            if kk != PAD:
                while j < n - 1 and key[q, j] < kk:
                    j += 1
                if key[q, j] == kk:
                    out_slot[i, s] = j


@numba.njit(cache=True, nogil=True)
def node_field(field, primary, secondary, slot, draw, out):  # pragma: no cover
    """One node attribute of the children: the secondary's value where the gene matches and
    ``draw < 0.5``, the primary's otherwise."""
    k, n = out.shape
    for i in range(k):
        p, q = primary[i], secondary[i]
        for s in range(n):
            j = slot[i, s]
            out[i, s] = field[q, j] if j >= 0 and draw[i, s] < 0.5 else field[p, s]


__all__ = ["conn_genes", "node_field", "node_matches"]
