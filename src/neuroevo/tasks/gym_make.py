"""``gymnasium.make`` with one-line errors: an unknown id, or a missing dependency with its pip extra."""

from __future__ import annotations

from typing import Any

from neuroevo.core.errors import ConfigError

# the Gymnasium extras, as named in its DependencyNotInstalled messages
EXTRAS = ("box2d", "mujoco", "atari", "toy-text", "classic-control", "other")


def make_env(env_id: str, key: str = "task.env", **kwargs: Any) -> Any:
    """``gymnasium.make(env_id, **kwargs)``; a ConfigError naming ``key`` when it cannot be made."""
    import gymnasium

    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.DependencyNotInstalled as exc:
        raise ConfigError(
            f"{key} = {env_id!r} needs a package that is not installed; allowed: pip install "
            f"'{extra_for(str(exc))}'"
        ) from None
    except gymnasium.error.Error as exc:
        raise ConfigError(f"{key} = {env_id!r}: {exc}") from None


def extra_for(message: str) -> str:
    """The Gymnasium extra a DependencyNotInstalled message names (``gymnasium[box2d]``, ...)."""
    lowered = message.lower()
    for extra in EXTRAS:
        if extra in lowered:
            return f"gymnasium[{extra}]"
    return "gymnasium[all]"
