"""Keep freed memory inside the process, so large-tensor churn does not page-fault.

PyTorch's CPU allocator hands every freed tensor back to ``malloc``. glibc serves a block
larger than its adaptive mmap threshold by a fresh mapping, and returns the top of the heap
past a trim threshold to the kernel, so the next tensor of that size is faulted in again page
by page. Temporaries that grow a little each generation, as NEAT's gene tables do, outgrow
the adaptive threshold every time and so fault every page (``tests/test_core.py`` measures
15-20x fewer faults with the settings below). ``keep_freed_memory`` raises glibc's
mmap and trim thresholds, the same effect as the ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` environment variables, but set from inside the process.

It applies once per process, on Linux with glibc only. Opt out with the environment variable
``NEUROEVO_KEEP_FREED_MEMORY=0`` or the run option ``keep_freed_memory = false``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_state = {"enabled": True, "applied": False}


def configure(enabled: bool) -> None:
    """Allow or forbid ``keep_freed_memory`` for this process (the run option's switch)."""
    _state["enabled"] = bool(enabled)


def keep_freed_memory(trim_threshold_mib: int = 1024, mmap_threshold_mib: int = 32) -> bool:
    """Serve blocks below ``mmap_threshold_mib`` from the heap and keep up to
    ``trim_threshold_mib`` of freed heap; returns whether the settings are in force."""
    if _state["applied"]:
        return True
    if not _state["enabled"] or os.environ.get("NEUROEVO_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mib << 20) == 1
    ok = ok and mallopt(_M_TRIM_THRESHOLD, trim_threshold_mib << 20) == 1
    _state["applied"] = ok
    return ok
