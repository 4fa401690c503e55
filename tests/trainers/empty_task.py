"""A user task module (imported through MIXTURE_OR_TASK_MODULE) whose splits are empty."""

import seqio
import tensorflow as tf

from tasks import quickstart

if "empty_lm" not in seqio.TaskRegistry.names():
  seqio.TaskRegistry.add(
      "empty_lm",
      source=seqio.FunctionDataSource(
          lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(
              {"targets": tf.constant([], tf.string)}
          ),
          splits=("train", "validation"),
      ),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features={"targets": seqio.Feature(quickstart.quickstart_vocabulary(), add_eos=True)},
  )
