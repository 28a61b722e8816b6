"""Prints the include folders the kernel's build needs, for CMakeLists.txt: XLA's FFI
headers (shipped in jaxlib) and oneDNN's (the onednn-devel-cpu-gomp wheel), one per
line; exits 1 with the reason on stderr when one is missing. Run by the build only."""

import importlib.metadata
import importlib.util
import os
import sys


def jaxlib_include():
  spec = importlib.util.find_spec("jaxlib")  # no import: jaxlib loads XLA when imported
  if spec is None or not spec.submodule_search_locations:
    raise LookupError("jaxlib is not installed in the build environment")
  folder = os.path.join(list(spec.submodule_search_locations)[0], "include")
  if not os.path.exists(os.path.join(folder, "xla", "ffi", "api", "ffi.h")):
    raise LookupError(f"jaxlib has no XLA FFI headers in {folder}")
  return folder


def dnnl_include():
  try:
    dist = importlib.metadata.distribution("onednn-devel-cpu-gomp")
  except importlib.metadata.PackageNotFoundError:
    raise LookupError("onednn-devel-cpu-gomp is not installed in the build environment")
  for f in dist.files or ():
    if f.name == "dnnl.hpp" and f.parent.name == "dnnl":  # include/oneapi/dnnl/dnnl.hpp
      return os.path.normpath(os.path.join(str(dist.locate_file(f)), "..", "..", ".."))
  raise LookupError("onednn-devel-cpu-gomp lists no include/oneapi/dnnl/dnnl.hpp")


if __name__ == "__main__":
  try:
    print(jaxlib_include())
    print(dnnl_include())
  except LookupError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
