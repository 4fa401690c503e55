"""A user task module with a SeqIO metric: copy a verse (inputs -> targets), scored by accuracy."""

import seqio
import tensorflow as tf

from tasks import metrics, quickstart

if "copy_verse" not in seqio.TaskRegistry.names():
  _VERSES = [line.split(",")[0][:40] for line in quickstart.split_lines("train")[:64]]

  def _dataset(split, shuffle_files, seed=None):
    del shuffle_files, seed
    verses = _VERSES[:48] if split == "train" else _VERSES[48:]
    return tf.data.Dataset.from_tensor_slices({"inputs": verses, "targets": verses})

  seqio.TaskRegistry.add(
      "copy_verse",
      source=seqio.FunctionDataSource(_dataset, splits=("train", "validation")),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features={
          "inputs": seqio.Feature(quickstart.quickstart_vocabulary(), add_eos=True),
          "targets": seqio.Feature(quickstart.quickstart_vocabulary(), add_eos=True),
      },
      metric_fns=[metrics.accuracy, metrics.chrf],
  )
