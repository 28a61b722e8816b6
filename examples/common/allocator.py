"""Keeps glibc from handing XLA's per-step buffers back to the OS after every step.

XLA's CPU runtime allocates each step's temporaries afresh. glibc returns large freed
blocks to the OS (they are mmap'ed, or trimmed off the heap's top), so the next step
page-faults the same memory back in. Raising the trim and mmap thresholds and using one
malloc arena keeps the memory in the process. What that is worth is measured by
`benchmarks/tools/measure_allocator.py` and shown in the docs (docs/performance).

It changes this process only, which is why the trainer does it and the library does
not: a library has no business tuning its user's allocator. The cost is that up to
`threshold` bytes of freed memory stay with the process instead of the OS.
"""

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's <malloc.h>


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
  """Sets glibc's malloc options for this process; False where there is no glibc.

  Call it before the first JAX computation, so that XLA's threads share the one arena.
  """
  if not sys.platform.startswith("linux"):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # musl and others: nothing to tune this way
    return False
  return all(mallopt(option, value) == 1 for option, value in
             ((M_TRIM_THRESHOLD, threshold), (M_MMAP_THRESHOLD, threshold), (M_ARENA_MAX, 1)))
