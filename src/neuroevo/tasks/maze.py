"""A deceptive 2D maze navigation task in the spirit of Lehman & Stanley's "hard maze" (2011).

A circular differential-drive robot starts at the bottom left facing north; the goal is at the
top left, straight above it. The straight path leads into a dead-end pocket right below the
goal (a wall separates them), so fitness = -distance to the goal rewards getting stuck there.
The way to the goal goes away from it: out of the pocket, east along the bottom, north
through a gap at the far right, then west under a wall hanging from the ceiling.

Sensors (the network's inputs): ``rays`` rangefinders spread around the heading (distance to
the nearest wall / ``sensor_range``, so 1 = nothing in range) and ``radar_slices`` pie-slice goal
sensors (1 in the slice that contains the goal's bearing, through walls). Outputs (``tanh``):
left and right wheel speeds in [-1, 1]; ``speed`` is the top speed per step, ``turn_rate`` the
turn in radians per step when the wheels spin in opposite directions. A move that would bring
the robot within ``robot_radius`` of a wall is cancelled (the turn still happens). A robot
within ``goal_radius`` of the goal stops there: it has solved the maze.

Everything is batched over the population: one step is a handful of tensor ops on
``[P, rays, walls]``; the loop runs over time steps only. The task is deterministic, so
``generation`` and ``stream`` are ignored.

``evaluate`` returns ``values = -final distance to the goal`` and ``descriptors = final (x, y)``
(novelty search), plus metrics ``success_rate`` and ``min_distance``. The task records the
final positions of each generation (stream 0) in ``history``; ``plot_maze_positions`` draws
them over the maze (``write_report(folder)`` does it for a run's report folder).

The positions are a per-generation record, not state: checkpoints must stay bounded over a
long run, so ``state_dict()`` holds none of them. In a run the runtime calls
``write_records(report_folder)`` at every checkpoint, which appends the generations recorded
since to ``report/maze_positions.jsonl`` (one line per generation) and drops them from memory;
``write_report`` then draws the whole run from that file (a resumed run re-records the
generations after its checkpoint; the last line of a generation wins).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from neuroevo.core.contracts import Capability, MemberResults
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness
from neuroevo.tasks.base import Task, TaskParams


@dataclass(frozen=True)
class Maze:
    """Walls as segments ``(x1, y1, x2, y2)``, a start pose, a goal and the arena size (y up)."""

    name: str
    walls: tuple[tuple[float, float, float, float], ...]
    start: tuple[float, float]
    start_heading: float
    goal: tuple[float, float]
    width: float
    height: float
    notes: str = field(default="", compare=False)

    def wall_tensor(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        return torch.tensor(self.walls, dtype=dtype, device=device)


def _box(w: float, h: float) -> tuple[tuple[float, float, float, float], ...]:
    return ((0, 0, w, 0), (w, 0, w, h), (w, h, 0, h), (0, h, 0, 0))


HARD_MAZE = Maze(
    name="hard",
    walls=(
        *_box(200.0, 200.0),
        (0.0, 120.0, 150.0, 120.0),  # the divider: the goal is above it, the start below
        (70.0, 50.0, 70.0, 120.0),  # the pocket: going straight north ends here, below the goal
        (100.0, 200.0, 100.0, 150.0),  # hanging wall: the last stretch runs west under it
        (150.0, 120.0, 150.0, 85.0),  # a lip at the gap, so the way up is not a straight diagonal
    ),
    start=(25.0, 25.0),
    start_heading=math.pi / 2,
    goal=(25.0, 175.0),
    width=200.0,
    height=200.0,
    notes="the straight path north ends in a pocket 55 units below the goal (fitness -55)",
)

OPEN_ARENA = Maze(
    name="open",
    walls=_box(200.0, 200.0),
    start=(25.0, 25.0),
    start_heading=math.pi / 2,
    goal=(175.0, 175.0),
    width=200.0,
    height=200.0,
    notes="no inner walls: fitness is not deceptive (a control for the hard maze)",
)

MAZES: dict[str, Maze] = {"hard": HARD_MAZE, "open": OPEN_ARENA}


def get_maze(maze: str | Maze) -> Maze:
    """A maze by name (``hard``, ``open``) or the ``Maze`` itself."""
    if isinstance(maze, Maze):
        return maze
    if maze not in MAZES:
        raise ConfigError(f"task.maze = {maze!r}; allowed: {', '.join(MAZES)}")
    return MAZES[maze]


def segment_distance(points: torch.Tensor, walls: torch.Tensor) -> torch.Tensor:
    """Distance from each point ``[P, 2]`` to each wall segment ``[W, 4]``: ``[P, W]``."""
    a, e = walls[:, :2], walls[:, 2:] - walls[:, :2]
    rel = points.unsqueeze(1) - a  # [P, W, 2]
    t = ((rel * e).sum(-1) / (e * e).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (rel - t.unsqueeze(-1) * e).norm(dim=-1)


def ray_distances(
    origin: torch.Tensor, angles: torch.Tensor, walls: torch.Tensor, max_range: float
) -> torch.Tensor:
    """Distance along each ray (``origin[P, 2]``, ``angles[P, R]``) to the nearest wall: ``[P, R]``."""
    d = torch.stack([torch.cos(angles), torch.sin(angles)], -1).unsqueeze(2)  # [P, R, 1, 2]
    a, e = walls[:, :2], walls[:, 2:] - walls[:, :2]  # [W, 2]
    ao = a - origin.view(-1, 1, 1, 2)  # [P, 1, W, 2]
    denom = d[..., 0] * e[:, 1] - d[..., 1] * e[:, 0]  # [P, R, W]
    safe = torch.where(denom.abs() < 1e-9, torch.ones_like(denom), denom)
    t = (ao[..., 0] * e[:, 1] - ao[..., 1] * e[:, 0]) / safe
    u = (ao[..., 0] * d[..., 1] - ao[..., 1] * d[..., 0]) / safe
    hit = (denom.abs() >= 1e-9) & (t >= 0) & (u >= 0) & (u <= 1)
    t = torch.where(hit, t, torch.full_like(t, max_range))
    return t.amin(-1).clamp(max=max_range)


class MazeParams(TaskParams):
    maze: Literal["hard", "open"] = Field("hard", description="map: hard (deceptive) or open (control)")
    steps: int = Field(200, ge=1, description="time steps per episode")
    rays: int = Field(6, ge=1, le=32, description="rangefinders, spread from -90 to +180 degrees")
    radar_slices: int = Field(4, ge=0, le=16, description="pie slices of the goal radar (0 = no radar)")
    sensor_range: float = Field(100.0, gt=0, description="rangefinder reach")
    speed: float = Field(4.0, gt=0, description="top speed per step")
    turn_rate: float = Field(0.3, gt=0, description="radians per step at full opposite wheel speeds")
    robot_radius: float = Field(4.0, gt=0, description="collision radius")
    goal_radius: float = Field(10.0, gt=0, description="reaching this distance from the goal solves the maze")
    record_history: bool = Field(
        True, description="record each generation's final positions (report/maze_positions.jsonl and .png)"
    )


POSITIONS_FILE = "maze_positions.jsonl"


class MazeTask(Task):
    """Batched maze navigation; fitness -distance to the goal at the end, descriptor final (x, y)."""

    name = "maze"
    Params = MazeParams
    #: one deterministic episode per member; validate() replays it (no held-out split)
    provides: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.INPUTS, Capability.EPISODES, Capability.DESCRIPTORS}
    )
    default_output_activation = "tanh"
    out_features = 2

    def __init__(
        self,
        params: MazeParams | None = None,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        **keys: Any,
    ):
        """``MazeTask(steps=100)``: ``keys`` are ``MazeParams`` keys; ``maze`` may also be a ``Maze``."""
        layout = keys.pop("maze") if isinstance(keys.get("maze"), Maze) else None
        self.params = p = self.params_from(params, **keys)
        maze = layout or p.maze
        self.maze = get_maze(maze)
        self.steps, self.rays, self.radar_slices = p.steps, p.rays, p.radar_slices
        self.range, self.speed, self.turn_rate = p.sensor_range, p.speed, p.turn_rate
        self.robot_radius, self.goal_radius = p.robot_radius, p.goal_radius
        self.record_history = p.record_history
        self.seed = int(seed)
        self.device = torch.device(device)
        self.walls = self.maze.wall_tensor(device=self.device)
        if self.rays == 1:
            ray_angles = [0.0]
        else:  # Lehman & Stanley: -90, -45, 0, 45, 90 and a rear ray
            ray_angles = [-math.pi / 2 + i * (3 * math.pi / 2) / (self.rays - 1) for i in range(self.rays)]
        self.ray_angles = torch.tensor(ray_angles, device=self.device)
        self.in_features = self.rays + self.radar_slices
        self.goal = torch.tensor(self.maze.goal, device=self.device)
        self.history: dict[int, torch.Tensor] = {}

    # -- simulation ---------------------------------------------------------------------------
    def observe(self, pos: torch.Tensor, heading: torch.Tensor) -> torch.Tensor:
        """Sensor readings ``[P, rays + radar_slices]`` for positions ``[P, 2]`` and headings ``[P]``."""
        angles = heading.unsqueeze(1) + self.ray_angles
        dist = ray_distances(pos, angles, self.walls, self.range) / self.range
        if not self.radar_slices:
            return dist
        to_goal = self.goal - pos
        bearing = torch.atan2(to_goal[:, 1], to_goal[:, 0]) - heading
        width = 2 * math.pi / self.radar_slices
        bearing = torch.remainder(bearing + width / 2, 2 * math.pi)  # slice 0 is centred ahead
        slice_idx = (bearing / width).long().clamp(max=self.radar_slices - 1)
        radar = torch.nn.functional.one_hot(slice_idx, self.radar_slices).to(dist.dtype)
        return torch.cat([dist, radar], 1)

    def rollout(self, phenotype: Any, population: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Final positions ``[P, 2]`` and the closest each robot came to the goal ``[P]``."""
        pos = torch.tensor(self.maze.start, device=self.device).repeat(size, 1)
        heading = torch.full((size,), self.maze.start_heading, device=self.device)
        done = torch.zeros(size, dtype=torch.bool, device=self.device)
        closest = (pos - self.goal).norm(dim=1)
        small = size * self.rays * self.walls.shape[0] < SMALL_BATCH
        with torch.no_grad(), _one_thread(small and self.device.type == "cpu"):
            for _ in range(self.steps):
                obs = self.observe(pos, heading)
                out = phenotype.forward(population, obs.unsqueeze(1))[:, 0, :].to(pos.dtype).clamp(-1, 1)
                left, right = out[:, 0], out[:, 1]
                velocity = self.speed * 0.5 * (left + right)
                heading = torch.where(done, heading, heading + self.turn_rate * 0.5 * (right - left))
                step = velocity.unsqueeze(1) * torch.stack([torch.cos(heading), torch.sin(heading)], 1)
                new = pos + step
                clear = segment_distance(new, self.walls).amin(1) > self.robot_radius
                pos = torch.where((clear & ~done).unsqueeze(1), new, pos)
                dist = (pos - self.goal).norm(dim=1)
                closest = torch.minimum(closest, dist)
                done = done | (dist <= self.goal_radius)
                if bool(done.all()):
                    break
        return pos, closest

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        results = self.evaluate_members(phenotype, population, generation, stream=stream)
        return self.merge_members(results, generation, stream=stream)

    def evaluate_members(
        self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0
    ) -> MemberResults:
        """The ``ShardedEvaluation`` hook: final positions and distances, the task unchanged."""
        size = _population_size(population)
        pos, closest = self.rollout(phenotype, population, size)
        dist = (pos - self.goal).norm(dim=1)
        return MemberResults(values=-dist, descriptors=pos, steps=size * self.steps)

    def merge_members(self, results: MemberResults, generation: int = 0, *, stream: int = 0) -> Fitness:
        """Record the positions (stream 0) and compute the population's metrics."""
        pos, dist = results.descriptors, -results.values
        assert pos is not None
        if self.record_history and stream == 0:
            self.history[int(generation)] = pos.detach().cpu().clone()
        solved = dist <= self.goal_radius
        metrics = {"success_rate": float(solved.float().mean()), "min_distance": float(dist.min())}
        return Fitness(values=results.values, descriptors=pos, steps=results.steps, metrics=metrics)

    def validate(self, phenotype: Any, params: Any) -> dict[str, float]:
        """Final distance to the goal of one member, and whether it solved the maze."""
        population = params.unsqueeze(0) if isinstance(params, torch.Tensor) and params.dim() == 1 else params
        pos, closest = self.rollout(phenotype, population, 1)
        dist = float((pos[0] - self.goal).norm())
        return {
            "distance": dist,
            "solved": float(dist <= self.goal_radius),
            "final_x": float(pos[0, 0]),
            "final_y": float(pos[0, 1]),
        }

    # -- records and report ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Nothing: the maze is deterministic, and positions are records (``write_records``), not state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accepts checkpoints of older versions, which carried the positions (kept until written)."""
        hist = state.get("history") or {}
        gens, positions = hist.get("generations", []), hist.get("positions", [])
        for g, pos in zip(gens, positions, strict=True):
            self.history.setdefault(int(g), torch.as_tensor(pos).clone())

    def write_records(self, folder: str | Path) -> Path | None:
        """Append the generations recorded since the last call to ``folder/maze_positions.jsonl``.

        Called by the runtime at every checkpoint; the written generations leave memory, so a
        long run holds at most ``checkpoint_every`` generations of positions.
        """
        if not self.history:
            return None
        path = Path(folder) / POSITIONS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"generation": g, "positions": [[round(v, 3) for v in row] for row in pos.tolist()]})
            for g, pos in sorted(self.history.items())
        ]
        with path.open("a") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
        self.history.clear()
        return path

    def write_report(self, folder: str | Path) -> list[Path]:
        """Write ``maze_positions.png`` (recorded positions: ``folder``'s file and memory); returns it."""
        history = read_maze_positions(Path(folder) / POSITIONS_FILE)
        history.update(self.history)
        if not history:
            return []
        path = Path(folder) / "maze_positions.png"
        plot_maze_positions(history, self, path)
        return [path]


def read_maze_positions(path: str | Path) -> dict[int, torch.Tensor]:
    """``{generation: positions[P, 2]}`` from ``maze_positions.jsonl`` (a generation's last line wins)."""
    path = Path(path)
    history: dict[int, torch.Tensor] = {}
    if not path.is_file():
        return history
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed run
            continue
        history[int(record["generation"])] = torch.tensor(record["positions"]).reshape(-1, 2)
    return dict(sorted(history.items()))


# Below this many ray-wall pairs a step's tensors are tiny; torch's intra-op threads then cost far
# more than they save (sin/cos/tanh on a [100, 6] tensor took 16 ms instead of 10 us with 2
# threads on a loaded 2-core machine), so the rollout runs on one thread.
SMALL_BATCH = 1 << 16


@contextmanager
def _one_thread(enabled: bool) -> Iterator[None]:
    """Run the block with one torch intra-op thread (restored afterwards) when ``enabled``."""
    if not enabled:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _population_size(population: Any) -> int:
    if isinstance(population, torch.Tensor):
        return population.shape[0] if population.dim() > 1 else 1
    return len(population)


def plot_maze_positions(
    history: Mapping[int, Any] | Sequence[Any],
    maze: Maze | MazeTask | str,
    path: str | Path,
    *,
    max_generations: int = 12,
    title: str | None = None,
) -> Path:
    """Draw final positions of the population over generations on the maze map; writes a PNG.

    ``history``: ``{generation: positions[P, 2]}`` or a list indexed by generation (e.g. each
    generation's ``Fitness.descriptors``). At most ``max_generations`` evenly spaced generations
    are drawn (always the first and the last), coloured from early (dark) to late (bright).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    task_radius = maze.goal_radius if isinstance(maze, MazeTask) else 10.0
    maze = maze.maze if isinstance(maze, MazeTask) else get_maze(maze)
    items = sorted(history.items()) if isinstance(history, Mapping) else list(enumerate(history))
    items = [(int(g), torch.as_tensor(p).detach().cpu().reshape(-1, 2)) for g, p in items]
    if len(items) > max_generations > 1:
        picks = sorted({round(i * (len(items) - 1) / (max_generations - 1)) for i in range(max_generations)})
        items = [items[i] for i in picks]
    fig = Figure(figsize=(6.4, 6.4 * maze.height / maze.width + 0.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for x1, y1, x2, y2 in maze.walls:
        ax.plot([x1, x2], [y1, y2], color="black", linewidth=2.5, solid_capstyle="round")
    cmap = colormaps["viridis"]
    for n, (gen, pos) in enumerate(items):
        color = cmap(n / max(1, len(items) - 1))
        ax.scatter(pos[:, 0], pos[:, 1], s=9, color=color, alpha=0.6, label=f"gen {gen}", linewidths=0)
    ax.add_patch(_circle(maze.goal, task_radius, "red"))
    ax.plot(*maze.start, marker="^", color="tab:blue", markersize=10, label="start")
    ax.plot(*maze.goal, marker="*", color="red", markersize=14, label="goal")
    ax.set_xlim(-5, maze.width + 5)
    ax.set_ylim(-5, maze.height + 5)
    ax.set_aspect("equal")
    ax.set_title(title or f"final positions over generations ({maze.name} maze)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=1.5)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _circle(center: tuple[float, float], radius: float, color: str) -> Any:
    from matplotlib.patches import Circle

    return Circle(center, radius, fill=False, edgecolor=color, linestyle="--")
