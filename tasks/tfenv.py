"""TensorFlow as a guest next to JAX: quiet logs, no GPUs, half of the CPU threads.

Import this module before `seqio` or `tensorflow` in every `tasks/` module: the log level
must be set before TensorFlow's C++ side loads, and device and thread settings only take
effect before TensorFlow runs its first op. If TensorFlow was already started by someone
else, its settings are kept.
"""

import os

from model_zoo import native_logs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with native_logs.native_stderr_held():  # the C++ import banner (the level misses some)
  import tensorflow as tf  # noqa: E402  (must follow the log level)


def _configure() -> None:
  tf.get_logger().setLevel("ERROR")
  threads = max(1, (os.cpu_count() or 2) // 2)
  try:
    # JAX owns the accelerators; TensorFlow would otherwise reserve all GPU memory.
    tf.config.set_visible_devices([], "GPU")
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  except RuntimeError:  # TensorFlow already initialised its runtime.
    pass


with native_logs.native_stderr_held():  # listing devices prints a cuInit error without a GPU
  _configure()
