"""Finding and loading the compiled oneDNN kernel: the library, its FFI targets, sizes.

The kernel (`rnn.cc`, built by `pip install` through CMake into
`<site-packages>/deeprnn_jax_kernels/`) calls oneDNN's C API, which it does not link:
oneDNN's CPU-only wheel (`onednn-cpu-gomp`, the `onednn` extra) ships `libdnnl.so.3`
into the environment's `lib/`, and it is loaded here first, with its symbols global.
`status()` says whether all of that worked and, if not, why: the time loops fall back
to the scan with that reason.

Threads: oneDNN's wheel runs on GNU OpenMP. Its threads spin after each parallel
region for GOMP_SPINCOUNT iterations before they sleep: long (the default, 300,000)
and they take the cores from XLA's own work between the kernel's calls; zero and each
of the kernel's time steps waits for them to wake (10x slower at H = 5). Unless the
user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, it is set here to SPINCOUNT, before
OpenMP starts (docs/performance: the measurements behind the value). `$DEEPRNN_JAX_ONEDNN_LIB` (the kernel) and
`$DEEPRNN_JAX_DNNL_LIB` (oneDNN) override where they are looked for.
"""

import ctypes
import functools
import glob
import os
import sys
import sysconfig
from typing import NamedTuple, Optional

KERNEL = "libdrnn_onednn.so"
FORWARD, BACKWARD = "drnn_onednn_forward", "drnn_onednn_backward"
CELLS = {"lstm": 0, "gru": 1}
SPINCOUNT = "30000"


class Status(NamedTuple):
  """Whether the kernel can run here: `lib` (ctypes) or None and `reason`."""

  lib: Optional[ctypes.CDLL]
  reason: str


def _candidates(name, folders):
  return [os.path.join(f, name) for f in folders if os.path.exists(os.path.join(f, name))]


def _kernel_path():
  if os.environ.get("DEEPRNN_JAX_ONEDNN_LIB"):
    return os.environ["DEEPRNN_JAX_ONEDNN_LIB"]
  roots = [sysconfig.get_paths()["platlib"], sysconfig.get_paths()["purelib"], *sys.path]
  found = _candidates(os.path.join("deeprnn_jax_kernels", KERNEL), roots)
  return found[0] if found else None


def _dnnl_path():
  if os.environ.get("DEEPRNN_JAX_DNNL_LIB"):
    return os.environ["DEEPRNN_JAX_DNNL_LIB"]
  folders = [os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")]
  found = [p for f in folders for p in sorted(glob.glob(os.path.join(f, "libdnnl.so.3*")))]
  return found[0] if found else None


@functools.lru_cache(maxsize=None)
def status() -> Status:
  """Loads oneDNN and the kernel once and registers the kernel's FFI targets."""
  if not sys.platform.startswith("linux"):
    return Status(None, f"the oneDNN kernel is built for Linux only; this is {sys.platform}")
  kernel = _kernel_path()
  if kernel is None:
    return Status(None, "the oneDNN kernel is not built (reinstall deeprnn_jax with "
                        "pip from its source: the build compiles it)")
  dnnl = _dnnl_path()
  if dnnl is None:
    return Status(None, "oneDNN is not installed (pip install 'deeprnn_jax[onednn]', "
                        "which brings onednn-cpu-gomp)")
  if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)  # libgomp reads it when it loads
  try:
    ctypes.CDLL(dnnl, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(kernel)
  except OSError as e:
    return Status(None, f"could not load the oneDNN kernel ({e})")
  import jax
  for name, symbol in ((FORWARD, lib.DrnnOnednnForward), (BACKWARD, lib.DrnnOnednnBackward)):
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol), platform="cpu")
  lib.drnn_onednn_sizes.restype = ctypes.c_int
  return Status(lib, "")


class Sizes(NamedTuple):
  workspace: int
  forward_scratch: int
  backward_scratch: int


@functools.lru_cache(maxsize=None)
def sizes(cell: str, T: int, B: int, F: int, H: int) -> Sizes:
  """The byte sizes of one layer call's workspace and scratchpads (builds and keeps its
  primitives; the scratchpads are the kernel's own, reported for the docs); a ValueError
  with oneDNN's message when the shape is unsupported."""
  lib = status().lib
  out = (ctypes.c_int64 * 3)()
  error = ctypes.create_string_buffer(512)
  if lib.drnn_onednn_sizes(ctypes.c_int64(CELLS[cell]), *(ctypes.c_int64(v) for v in
                                                          (T, B, F, H)),
                           out, error, ctypes.c_int64(len(error))) != 0:
    raise ValueError(f"oneDNN cannot run a {cell} layer of shape T={T}, B={B}, F={F}, "
                     f"H={H}: {error.value.decode()}")
  return Sizes(*(max(int(v), 1) for v in out))  # XLA buffers of at least one byte
