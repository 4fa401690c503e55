"""my_tasks: a causal-LM task over a text file, and a mixture of it with the quickstart."""

import seqio
import tensorflow as tf

from tasks import metrics, quickstart

TEXT_FILE = str(quickstart.CORPUS_PATH)  # your text, one example a line


def lines_to_targets(ds: tf.data.Dataset) -> tf.data.Dataset:
  """TextLineDataSource yields bare lines; the LM trains on them as `targets`."""
  return ds.map(lambda line: {"targets": line}, num_parallel_calls=tf.data.AUTOTUNE)


if "my_task" not in seqio.TaskRegistry.names():  # importing twice is harmless
  seqio.TaskRegistry.add(
      "my_task",
      source=seqio.TextLineDataSource({"train": TEXT_FILE, "validation": TEXT_FILE}),
      preprocessors=[
          lines_to_targets,
          seqio.preprocessors.tokenize,
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features={
          "targets": seqio.Feature(quickstart.quickstart_vocabulary(), add_eos=True),
      },
      metric_fns=[metrics.chrf],
  )
  seqio.MixtureRegistry.add("my_mixture", [("my_task", 2.0), (quickstart.TASK_NAME, 1.0)])
