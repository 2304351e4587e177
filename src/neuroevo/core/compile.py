"""``torch.compile`` with an eager fallback, shared by every fused hot path.

Compilation needs a working backend (a C++ compiler for inductor on the CPU). Where it is missing or
fails, the eager function runs instead and one warning line says why, once per function. The
compiled and eager paths compute the same thing; tests compare them at float tolerance.
Set ``NEUROEVO_COMPILE=0`` to run eager everywhere. Inductor caches compiled kernels on disk
(``TORCHINDUCTOR_CACHE_DIR``, by default under the system temporary folder), so later runs pay
less compile time; wall-time figures in ``benchmarks/`` include whatever compile time a run pays.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable
from typing import Any, TypeVar

import torch

LOGGER = logging.getLogger("neuroevo.compile")
F = TypeVar("F", bound=Callable[..., Any])


def compile_enabled() -> bool:
    """Whether fused paths should try ``torch.compile`` (``NEUROEVO_COMPILE`` unset or not "0")."""
    return os.environ.get("NEUROEVO_COMPILE", "1").strip().lower() not in {"0", "false", "no", "off"}


def _missing_backend(device: str) -> str | None:
    """Why compilation cannot work here, or None; only the cheap check (a C++ compiler on the CPU)."""
    if device == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cc", "gcc")):
        return "no C++ compiler on PATH"
    return None


def maybe_compile(fn: F, *, name: str, device: str = "cpu", **options: Any) -> F:
    """``fn`` compiled with ``torch.compile(**options)``, falling back to ``fn`` with one warning.

    The first call that fails to compile switches this function to eager for the rest of the
    process; an error that eager raises too is the caller's own and propagates unchanged.
    """
    reason = None if compile_enabled() else "NEUROEVO_COMPILE=0"
    reason = reason or _missing_backend(torch.device(device).type)
    if reason == "NEUROEVO_COMPILE=0":
        return fn
    if reason is not None:
        LOGGER.warning("torch.compile unavailable for %s (%s); running eager", name, reason)
        return fn
    compiled = torch.compile(fn, **options)
    use: list[Callable[..., Any]] = [compiled]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if use[0] is fn:
            return fn(*args, **kwargs)
        try:
            return use[0](*args, **kwargs)
        except Exception as error:  # a backend failure: compile errors have no common base class
            result = fn(*args, **kwargs)  # raises if the error was the caller's, not the compiler's
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            LOGGER.warning(
                "torch.compile failed for %s (%s: %s); running eager", name, type(error).__name__, first
            )
            use[0] = fn
            return result

    call.eager = fn  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]
