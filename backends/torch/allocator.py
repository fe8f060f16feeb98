"""The process's CPU memory allocator, set for running networks.

glibc's malloc serves a block above its mmap threshold (128 KiB, rising with use to at most
32 MiB) straight from the kernel and gives it back on free, and trims the heap's free top: so every
step of a network asks the kernel again for its large activations, and the kernel faults in and
zeroes each page again. On two cores that was about half of an EfficientNet-B0 inference step at
batch 16 (benchmarks/results/allocator_cpu.json). Keeping freed memory in the process, as
PyTorch's CUDA caching allocator does on a GPU and as the jemalloc/tcmalloc that PyTorch's CPU
tuning guide recommends do, removes that work. The price: the process keeps its peak memory until
it exits, which a training or timing process reaches every step anyway.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# blocks above 1 GiB still come from the kernel; the heap's top is kept up to 2 GiB - 1 (an int)
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1

_state: list[str] = []


def keep_freed_memory() -> str:
    """Set the allocator, once per process, where it is glibc's; what it is now, in words (for
    reports). Elsewhere the system allocator is left as it is."""
    if not _state:
        _state.append(_set())
    return _state[0]


def _set() -> str:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "the system's allocator, as it is"
    libc = ctypes.CDLL(None)
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    if not ok:
        return "glibc malloc, as it is (mallopt refused the settings)"
    return "glibc malloc keeping freed memory (mmap threshold 1 GiB, heap trimmed above 2 GiB)"
