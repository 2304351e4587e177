"""The flat compile's walks over each genome's graph, as compiled loops (numba).

``flat._compile_flat_numpy`` needs, for every enabled connection, the positions of its two
end nodes among its genome's node genes, and every node's topological level. As whole-array
steps these are two searches over all P genomes' keys and a relaxation repeated over every
connection of the population until no level changes (as many passes as the deepest genome
has levels). Here each genome's few sorted keys are searched in place, and each genome's
levels are relaxed over its own connections, which stay in the cache. Same integers. The
cycle check of add-connection (``reaches``) walks each candidate's genome the same way.
"""

from __future__ import annotations

import numba
import numpy as np

from neuroevo.nn.neat.genes import PAD

CYCLE = -1
"""What ``levels`` returns when a genome's levels do not settle (it has a cycle)."""


@numba.njit(cache=True, nogil=True)
def _find(keys, count, key):  # pragma: no cover
    """Position of ``key`` among the first ``count`` (sorted) ``keys``, or -1."""
    if count <= 16:  # a genome's few nodes: a scan beats the search's unpredictable branches
        for t in range(count):
            if keys[t] >= key:
                return t if keys[t] == key else -1
        return -1
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < count and keys[lo] == key else -1


@numba.njit(cache=True, nogil=True)
def edge_ends(node_key, counts, row_start, conn_in, conn_out, enabled, num_in):  # pragma: no cover
    """The enabled connection slots (flat, genome-major), their source and target positions
    among all genomes' node genes (genome g's from ``row_start[g]``; -1 where absent) and
    whether each joins existing nodes (an input source counts as existing)."""
    p, c = conn_in.shape
    at = np.empty(p * c, np.int64)
    src_pos = np.empty(p * c, np.int64)
    dst_pos = np.empty(p * c, np.int64)
    keep = np.empty(p * c, np.bool_)
    e = 0
    for g in range(p):
        keys, count, first = node_key[g], counts[g], row_start[g]
        for s in range(c):
            if not enabled[g, s]:  # empty slots are disabled
                continue
            a, b = conn_in[g, s], conn_out[g, s]
            ps, pd = _find(keys, count, a), _find(keys, count, b)
            at[e] = g * c + s
            src_pos[e] = first + ps if ps >= 0 else ps
            dst_pos[e] = first + pd if pd >= 0 else pd
            keep[e] = (ps >= 0 or a < num_in) and pd >= 0
            e += 1
    return at[:e], src_pos[:e], dst_pos[:e], keep[:e]


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


@numba.njit(cache=True, nogil=True)
def reaches(node_key, counts, innov, conn_in, conn_out, rows, start, goal, num_in):  # pragma: no cover
    """For genomes ``rows``: whether a path over their connections (enabled or not; both ends
    inputs or node genes of the genome) leads from node id ``start`` to node id ``goal``. A
    depth-first walk over value slots ``[inputs | node genes]``, genome by genome."""
    k, c, width = rows.shape[0], conn_in.shape[1], num_in + node_key.shape[1]
    out = np.zeros(k, np.bool_)
    seen = np.zeros(width, np.bool_)
    stack = np.empty(width, np.int64)
    for i in range(k):
        r = rows[i]
        seen[:] = False
        s0 = start[i] if start[i] < num_in else _find(node_key[r], counts[r], start[i])
        if s0 < 0:
            continue
        s0 = s0 if start[i] < num_in else s0 + num_in
        if start[i] == goal[i]:  # the empty path
            out[i] = True
            continue
        seen[s0], stack[0], top = True, start[i], 1
        while top and not out[i]:
            top -= 1
            u = stack[top]
            for s in range(c):
                if innov[r, s] == PAD or conn_in[r, s] != u:
                    continue
                v = conn_out[r, s]
                at = v if v < num_in else _find(node_key[r], counts[r], v)
                if at < 0:
                    continue  # a connection to a node the genome lacks
                at = at if v < num_in else at + num_in
                if v == goal[i]:
                    out[i] = True
                    break
                if not seen[at]:
                    seen[at] = True
                    stack[top] = v
                    top += 1
    return out


__all__ = ["CYCLE", "edge_ends", "levels", "reaches"]
