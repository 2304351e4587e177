"""The flat compile's walks over each genome's graph, as compiled loops (numba).

``flat._compile_flat_numpy`` needs, for every enabled connection, the positions of its two
end nodes among its genome's node genes, and every node's topological level. As whole-array
steps these are two searches over all P genomes' keys and a relaxation repeated over every
connection of the population until no level changes (as many passes as the deepest genome
has levels). Here each genome's few sorted keys are searched in place, and each genome's
levels are relaxed over its own connections, which stay in the cache. Same integers.
"""

from __future__ import annotations

import numba
import numpy as np

CYCLE = -1
"""What ``levels`` returns when a genome's levels do not settle (it has a cycle)."""


@numba.njit(cache=True, nogil=True)
def _find(keys, count, key):  # pragma: no cover
    """Position of ``key`` among the first ``count`` (sorted) ``keys``, or -1."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < count and keys[lo] == key else -1


@numba.njit(cache=True, nogil=True)
def edge_ends(node_key, counts, row_start, conn_in, conn_out, at, num_in):  # pragma: no cover
    """For the connection slots ``at`` (flat, genome-major): source and target positions among
    all genomes' node genes (genome g's from ``row_start[g]``; -1 where absent) and whether
    the connection joins existing nodes (an input source counts as existing)."""
    e = at.shape[0]
    c = conn_in.shape[1]
    src_pos = np.empty(e, np.int64)
    dst_pos = np.empty(e, np.int64)
    keep = np.empty(e, np.bool_)
    for i in range(e):
        g, s = at[i] // c, at[i] % c
        a, b = conn_in[g, s], conn_out[g, s]
        ps = _find(node_key[g], counts[g], a)
        pd = _find(node_key[g], counts[g], b)
        src_pos[i] = row_start[g] + ps if ps >= 0 else ps
        dst_pos[i] = row_start[g] + pd if pd >= 0 else pd
        keep[i] = (ps >= 0 or a < num_in) and pd >= 0
    return src_pos, dst_pos, keep


@numba.njit(cache=True, nogil=True)
def levels(genome, src_node, dst_pos, k, longest):  # pragma: no cover
    """Each of the ``k`` nodes' level: 1 + its deepest source's (``src_node == k`` is an input,
    level 0), relaxed genome by genome over its connections (``genome`` sorted). Returns
    ``CYCLE`` in place of the levels' count check when a genome's levels do not settle."""
    level = np.ones(k + 1, np.int64)
    level[k] = 0
    e = genome.shape[0]
    start = 0
    while start < e:
        end = start
        while end < e and genome[end] == genome[start]:
            end += 1
        for passes in range(longest + 3):
            changed = False
            for i in range(start, end):
                v = level[src_node[i]] + 1
                if v > level[dst_pos[i]]:
                    level[dst_pos[i]] = v
                    changed = True
            if not changed:
                break
            if passes == longest + 2:
                return level[:k], CYCLE
        start = end
    return level[:k], 0


__all__ = ["CYCLE", "edge_ends", "levels"]
