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

import torch

from neuroevo.nn.neat.genes import PAD

_PAIR = 1 << 31  # node ids stay far below this; a (src, dst) pair is src * _PAIR + dst


def _empty() -> torch.Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class InnovationTracker:
    """The global node id / innovation counters and this generation's pairs (sorted keys)."""

    next_node_id: int
    next_innovation: int
    pair_keys: torch.Tensor = field(default_factory=_empty)
    pair_innovations: torch.Tensor = field(default_factory=_empty)

    def new_generation(self) -> None:
        """Start a generation's mutations: earlier pairs no longer share numbers."""
        self.pair_keys, self.pair_innovations = _empty(), _empty()

    def _register(self, keys: torch.Tensor, innovations: torch.Tensor) -> None:
        key = torch.cat([self.pair_keys, keys])
        inn = torch.cat([self.pair_innovations, innovations])
        order = torch.argsort(key, stable=True)
        self.pair_keys, self.pair_innovations = key[order], inn[order]

    def split(
        self, split: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Node ids and (in -> new, new -> out) innovations for splitting the connections with
        innovations ``split`` (``src -> dst``): equal splits get equal numbers."""
        uniq, inv = torch.unique(split, return_inverse=True)
        n_new = len(uniq)
        new_id = self.next_node_id + inv
        in_innov = self.next_innovation + 2 * inv
        out_innov = in_innov + 1
        self._register(
            torch.cat([src * _PAIR + new_id, new_id * _PAIR + dst]), torch.cat([in_innov, out_innov])
        )
        self.next_node_id += n_new
        self.next_innovation += 2 * n_new
        return new_id, in_innov, out_innov

    def connections(self, src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Innovations for new connections ``src -> dst``, and whether any reused a number of
        this generation (then it may sort below its genome's newest gene)."""
        key = src * _PAIR + dst
        innov = torch.full((len(key),), PAD, dtype=torch.long)
        reused = False
        if self.pair_keys.numel():
            pos = torch.searchsorted(self.pair_keys, key).clamp(max=self.pair_keys.numel() - 1)
            known = self.pair_keys[pos] == key
            innov = torch.where(known, self.pair_innovations[pos], innov)
            reused = bool(known.any())
        fresh = innov == PAD
        if bool(fresh.any()):
            uniq, inv = torch.unique(key[fresh], return_inverse=True)
            innov[fresh] = self.next_innovation + inv
            self._register(uniq, self.next_innovation + torch.arange(len(uniq)))
            self.next_innovation += len(uniq)
        return innov, reused

    def state(self) -> dict[str, Any]:
        return {"next_node_id": int(self.next_node_id), "next_innovation": int(self.next_innovation)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> InnovationTracker:
        return cls(int(state["next_node_id"]), int(state["next_innovation"]))


__all__ = ["InnovationTracker"]
