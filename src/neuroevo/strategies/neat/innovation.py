"""Innovation numbers: the historical markings that let NEAT align genomes (paper, section 3.2).

Every new connection gene gets the next global innovation number and every new node the
next node id. Within one generation the same structural mutation gets the same numbers
(the paper's fix for the same innovation arising in several genomes): a split of the same
connection gets the same node id and the same two connection innovations; a new connection
between the same two nodes gets the same innovation. The table of this generation's
(source, target) pairs is forgotten when the next generation's mutations start
(``new_generation``), so only the two counters go into checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuroevo.nn.neat.genes import PAD

_PAIR = 1 << 31  # node ids stay far below this; a (src, dst) pair is src * _PAIR + dst

Ids = np.ndarray | torch.Tensor


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _as_numpy(*values: Ids) -> list[np.ndarray]:
    """int64 arrays (a pair key ``src * _PAIR + dst`` needs 62 bits; ids are int32 in genomes)."""
    out = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in values]
    return [v.astype(np.int64, copy=False) for v in out]


def _like(value: np.ndarray, template: Ids) -> Ids:
    """``value`` as the kind of ``template`` (a tensor on its device, or a NumPy array)."""
    if isinstance(template, torch.Tensor):
        return torch.from_numpy(value).to(template.device)
    return value


@dataclass
class InnovationTracker:
    """The global node id / innovation counters and this generation's pairs (sorted keys).

    The pairs are a few per mutated genome, so they are kept in NumPy (a tensor call costs
    several NumPy calls); ids come back as the kind they came in (tensors on their device)."""

    next_node_id: int
    next_innovation: int
    pair_keys: np.ndarray = field(default_factory=_empty)
    pair_innovations: np.ndarray = field(default_factory=_empty)

    def new_generation(self) -> None:
        """Start a generation's mutations: earlier pairs no longer share numbers."""
        self.pair_keys, self.pair_innovations = _empty(), _empty()

    def _register(self, keys: np.ndarray, innovations: np.ndarray) -> None:
        key = np.concatenate([self.pair_keys, keys])
        inn = np.concatenate([self.pair_innovations, innovations])
        order = np.argsort(key, kind="stable")
        self.pair_keys, self.pair_innovations = key[order], inn[order]

    def split(self, split: Ids, src: Ids, dst: Ids) -> tuple[Ids, Ids, Ids]:
        """Node ids and (in -> new, new -> out) innovations for splitting the connections with
        innovations ``split`` (``src -> dst``): equal splits get equal numbers."""
        split_np, src_np, dst_np = _as_numpy(split, src, dst)
        uniq, inv = np.unique(split_np, return_inverse=True)
        n_new = len(uniq)
        new_id = self.next_node_id + inv
        in_innov = self.next_innovation + 2 * inv
        out_innov = in_innov + 1
        self._register(
            np.concatenate([src_np * _PAIR + new_id, new_id * _PAIR + dst_np]),
            np.concatenate([in_innov, out_innov]),
        )
        self.next_node_id += n_new
        self.next_innovation += 2 * n_new
        return _like(new_id, split), _like(in_innov, split), _like(out_innov, split)

    def connections(self, src: Ids, dst: Ids) -> tuple[Ids, bool]:
        """Innovations for new connections ``src -> dst``, and whether any reused a number of
        this generation (then it may sort below its genome's newest gene)."""
        src_np, dst_np = _as_numpy(src, dst)
        key = src_np * _PAIR + dst_np
        innov = np.full(len(key), PAD, dtype=np.int64)
        reused = False
        if self.pair_keys.size:
            pos = np.minimum(np.searchsorted(self.pair_keys, key), self.pair_keys.size - 1)
            known = self.pair_keys[pos] == key
            innov = np.where(known, self.pair_innovations[pos], innov)
            reused = bool(known.any())
        fresh = innov == PAD
        if fresh.any():
            uniq, inv = np.unique(key[fresh], return_inverse=True)
            innov[fresh] = self.next_innovation + inv
            self._register(uniq, self.next_innovation + np.arange(len(uniq)))
            self.next_innovation += len(uniq)
        return _like(innov, src), reused

    def state(self) -> dict[str, Any]:
        return {"next_node_id": int(self.next_node_id), "next_innovation": int(self.next_innovation)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> InnovationTracker:
        return cls(int(state["next_node_id"]), int(state["next_innovation"]))


__all__ = ["InnovationTracker"]
