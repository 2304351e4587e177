"""Native batched classic-control environments (matching Gymnasium 1.x) and the ``control`` task.

``ENVS`` maps Gymnasium ids to the batched implementations; ``make_env(id, ...)`` builds one.
See ``neuroevo.tasks.control.base`` for the stepping/masking contract and numerics.
"""

from __future__ import annotations

from neuroevo.tasks.control.acrobot import Acrobot
from neuroevo.tasks.control.base import BatchedEnv
from neuroevo.tasks.control.cartpole import CartPole
from neuroevo.tasks.control.envs import ENVS, make_env
from neuroevo.tasks.control.mountain_car import MountainCar, MountainCarContinuous
from neuroevo.tasks.control.normalization import RunningObsNorm
from neuroevo.tasks.control.pendulum import Pendulum
from neuroevo.tasks.control.task import ControlParams, ControlTask

__all__ = [
    "ENVS",
    "Acrobot",
    "BatchedEnv",
    "CartPole",
    "ControlParams",
    "ControlTask",
    "MountainCar",
    "MountainCarContinuous",
    "Pendulum",
    "RunningObsNorm",
    "make_env",
]
