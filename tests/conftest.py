"""Test-wide setup: 8 fake CPU devices (meshes and sharding), fast CPU compiles, quiet
TensorFlow, clean gin.

The suite's time is mostly XLA compiling small programs on the CPU. The backend
optimisation level 0 only turns down LLVM's optimisation of the generated machine code
(the HLO passes, and so what is computed, are unchanged); it cut the suite's compile-bound
tests by a quarter to two fifths. Set either flag in XLA_FLAGS to override it.

The command-line tests that run each entry point in its own process compile the same
programs again: those subprocesses share JAX's persistent compilation cache, in a directory
of this test session's own (new each session, removed at its end), and compile each once.
Four command-line tests took 77 s with it against 129 s without. Set
JAX_COMPILATION_CACHE_DIR to choose the directory. The pytest process itself does not use
it (it aborted inside `executable.serialize()` late in a full run).

Every compiled executable stays alive in JAX's caches, and each holds ~6 memory mappings
of JIT code; a full run in one process compiles thousands and neared the kernel's
`vm.max_map_count` (65,530), where LLVM's next mapping failed and the process segfaulted
inside XLA's compiler (twice, ~85% of the way through). The caches are cleared after each
test module, which returns the mappings (2,352 -> 539 for 300 executables).
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
import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_compilation_cache", False)  # this process only: see above


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture(autouse=True, scope="module")
def _release_executables():
  yield
  jax.clear_caches()
