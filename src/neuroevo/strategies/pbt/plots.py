"""PBT report plots (matplotlib, Agg): the best member's schedule, the population's curves, the lineage.

- ``pbt_schedule.png``: each hyperparameter of the final best member's lineage against training
  step (a step function: one value per ready interval);
- ``pbt_curves.png``: every member's fitness (validation metric) at each of its ready points;
- ``pbt_lineage.png``: the lineage tree, members against generation, a line from each ready
  event to the member's next one, red where it copied its parent's saved state; the best
  member's lineage is drawn thick.

All three read the ready events of ``pbt.jsonl`` member by member, so they draw the
asynchronous mode (each member ready at its own generations) as well as the synchronous one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_pbt(strategy: Any, events: list[dict[str, Any]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    own: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        own.setdefault(int(e["member"]), []).append(e)
    lineage = strategy.lineage(events)

    names = list(strategy.space.names)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        if lineage:
            xs = [0] + [e["step"] for e in lineage]  # each interval starts at its predecessor's step
            ys = [e["old"][name] for e in lineage]
            ax.step(xs, [*ys, ys[-1]], where="post")
            hp = strategy.space.params[names.index(name)]
            if hp.kind == "continuous" and hp.spec.log:
                ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].set_title("hyperparameter schedule of the best member's lineage")
    fig.tight_layout()
    fig.savefig(folder / "pbt_schedule.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for member_events in own.values():
        steps = [e["step"] for e in member_events]
        values = [e["fitness"] for e in member_events]
        ax.plot(steps, values, alpha=0.5, linewidth=1)
    if lineage:
        ax.plot(
            [e["step"] for e in lineage],
            [e["fitness"] for e in lineage],
            color="k",
            linewidth=2,
            label="best lineage",
        )
        ax.legend(loc="lower right")
    ax.set_xlabel("training step")
    ax.set_ylabel("fitness (validation)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "pbt_curves.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m, member_events in own.items():
        for e, nxt in zip(member_events, member_events[1:], strict=False):
            parent = int(e["parent"])  # the member's next interval starts from this member's state
            copied = parent != m
            ax.plot(
                [e["generation"], nxt["generation"]],
                [parent, m],
                color="tab:red" if copied else "0.8",
                linewidth=0.8 if copied else 0.5,
                zorder=1,
            )
    if lineage:
        ax.plot(
            [e["generation"] for e in lineage],
            [e["member"] for e in lineage],
            color="k",
            linewidth=2.5,
            zorder=2,
            label="best lineage",
        )
        ax.legend(loc="upper right")
    ax.set_xlabel("generation (ready interval)")
    ax.set_ylabel("member")
    ax.set_title("lineage: red = copied the parent's saved state")
    fig.tight_layout()
    fig.savefig(folder / "pbt_lineage.png", dpi=100)
    plt.close(fig)
