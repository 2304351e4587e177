"""Import a user's object named in a config: ``"package.module:attr"`` or ``"path/to/file.py:attr"``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from pathlib import Path
from typing import Any

from neuroevo.core.errors import ConfigError


def load_object(path: str, key: str) -> Any:
    """The object ``path`` names; a one-line ConfigError naming the config ``key`` when it cannot.

    A ``.py`` file is imported under its stem (once; later calls reuse the module), so the
    same path names the same object in a run and in its resume.
    """
    module_name, _, attr = str(path).rpartition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"{key} = {path!r}; allowed: an import path like 'mypkg.fitness:score' or 'file.py:score'"
        )
    try:
        module = _import(module_name)
    except Exception as exc:  # a user's module may fail in any way on import: one line naming it
        raise ConfigError(
            f"{key} = {path!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key} = {path!r}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _import(module_name: str) -> Any:
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    file = Path(module_name).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no file {file}")
    name = f"neuroevo_user_{file.stem}_{zlib.crc32(str(file).encode()):08x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
