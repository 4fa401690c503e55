"""Test-wide setup: 8 fake CPU devices (meshes and sharding), fast CPU compiles, quiet
TensorFlow, clean gin.

The suite's time is mostly XLA compiling small programs on the CPU. The backend
optimisation level 0 only turns down LLVM's optimisation of the generated machine code
(the HLO passes, and so what is computed, are unchanged); it cut the suite's compile-bound
tests by a quarter to two fifths. Set either flag in XLA_FLAGS to override it.

Many tests (the command-line ones above all, each its own run) compile the same programs
again: JAX's persistent compilation cache, in a directory of this test session's own (new
each session, removed at its end; the tests' subprocesses inherit it), compiles each once.
Four command-line tests took 77 s with it against 129 s without. Set
JAX_COMPILATION_CACHE_DIR to choose the directory.
"""

import atexit
import os
import shutil
import tempfile

_TEST_XLA_FLAGS = {
    "xla_force_host_platform_device_count": "8",
    "xla_backend_optimization_level": "0",
}
for _name, _value in _TEST_XLA_FLAGS.items():
  if _name not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_name}={_value}".strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix="podzoo-tests-xla-cache-")
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import gin  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()
