"""Fitness: supervised data, user functions (control environments come in tasks.control/gym).

``TASKS`` maps config names to task classes, each with a pydantic ``Params`` model.
"""

from neuroevo.core.registry import Registry
from neuroevo.tasks.base import Task, TaskParams
from neuroevo.tasks.control import ControlTask
from neuroevo.tasks.function import FunctionTask, load_callable
from neuroevo.tasks.gym import GymTask
from neuroevo.tasks.maze import MazeTask, plot_maze_positions
from neuroevo.tasks.supervised import (
    XOR,
    BreastCancer,
    Digits,
    Iris,
    Parity,
    Regression,
    Sine,
    SupervisedTask,
)


def _plugin_task(name: str, obj: object) -> type[Task]:
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        raise TypeError(f"expected a Task subclass, got {obj!r}")
    return obj


#: config name -> task class; plugins: entry-point group ``neuroevo.tasks``
TASKS: Registry[type[Task]] = Registry("task", "neuroevo.tasks", _plugin_task)


def register_task(cls: type[Task], *, aliases: tuple[str, ...] = ()) -> type[Task]:
    """Make ``cls`` available under ``cls.name`` in configs and ``neuroevo list``."""
    return TASKS.register(cls.name, cls, aliases=aliases)


for _cls in (XOR, Parity, Sine, Regression, Iris, BreastCancer, Digits, FunctionTask):
    register_task(_cls)
register_task(MazeTask, aliases=("hard_maze",))
register_task(ControlTask)
register_task(GymTask)

__all__ = [
    "TASKS",
    "XOR",
    "BreastCancer",
    "Digits",
    "FunctionTask",
    "Iris",
    "MazeTask",
    "Parity",
    "Regression",
    "Sine",
    "SupervisedTask",
    "Task",
    "TaskParams",
    "load_callable",
    "plot_maze_positions",
    "register_task",
]
