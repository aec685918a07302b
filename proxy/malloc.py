"""Give freed body memory back to the kernel (glibc's allocator; a no-op elsewhere).

Buffered request bodies are large, short-lived allocations. glibc serves
allocations over its mmap threshold with their own mapping, returned on free,
but it raises that threshold (up to 32 MiB) each time such a block is freed,
so after the first few bodies the next ones come from the heap, and a burst
of stalled uploads left the process hundreds of MiB larger after they closed
(trust round 3, finding 7). Two remedies, both cheap:

- :func:`tune` fixes the mmap threshold at 1 MiB (setting it turns the
  dynamic adjustment off), so a large body buffer is its own mapping. Not
  lower: socket reads are up to 256 KiB, and a threshold under that made
  every read of a streamed response an mmap/munmap pair (streaming fell from
  1.15 to 0.7 GB/s in bench/run.py);
- :func:`trim` (``malloc_trim(0)``) returns free heap pages after a burst;
  :class:`proxy.uploads.MemoryBudget` calls it when buffered bodies drop to
  nothing after holding many MiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024

_libc: Any = None
_tuned = False


def _glibc() -> Any:
    global _libc
    if _libc is None:
        lib: Any = False
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt  # noqa: B018 - glibc only: musl and others have no mallopt
            lib.malloc_trim  # noqa: B018
        except (OSError, AttributeError):
            lib = False
        _libc = lib
    return _libc or None


def tune() -> None:
    """Fix the mmap and trim thresholds once per process (see the module docstring)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    lib = _glibc()
    if lib is not None:
        lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        lib.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def trim() -> None:
    """Return free heap memory to the kernel now."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
