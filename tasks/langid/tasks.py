"""`langid_catalogs`: language identification as text-to-text over the parallel corpus.

One example per (message, language) of the corpus's TFDS dataset: inputs the text,
targets its language code ("de"), so any encoder-decoder or prefix LM in podzoo can be
trained and scored on LangID with the `accuracy` metric. A text that another language of
the same message has word for word ("Bolivia" in es and it) is left out: no single
target is right for it. Importing this module registers the task; importing it again is
harmless.
"""

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks import metrics
from tasks.parallel import corpus, tfds_dataset, vocabulary

TASK_NAME = "langid_catalogs"
# A message's languages are consecutive examples; a buffer of ~1000 messages' worth mixes
# languages and messages well without holding the corpus (~100k examples) in memory.
SHUFFLE_BUFFER_SIZE = 1 << 14


def one_example_per_language(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """{"inputs": text, "targets": language} for each language a message has, unambiguously."""
  languages = tf.constant(corpus.LANGUAGES)

  def explode(example):
    texts = tf.stack([example[lang] for lang in corpus.LANGUAGES])
    copies = tf.reduce_sum(tf.cast(tf.equal(texts[:, None], texts[None, :]), tf.int32), axis=1)
    keep = (tf.strings.length(texts) > 0) & (copies == 1)
    return tf.data.Dataset.from_tensor_slices(
        {"inputs": tf.boolean_mask(texts, keep), "targets": tf.boolean_mask(languages, keep)}
    )

  return dataset.flat_map(explode)


def _register() -> None:
  if TASK_NAME in seqio.TaskRegistry.names():
    return
  vocab = vocabulary.parallel_vocabulary()
  seqio.TaskRegistry.add(
      TASK_NAME,
      source=tfds_dataset.prepare(),
      preprocessors=[
          one_example_per_language,
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features={
          "inputs": seqio.Feature(vocab, add_eos=True),
          "targets": seqio.Feature(vocab, add_eos=True),
      },
      metric_fns=[metrics.accuracy],
      shuffle_buffer_size=SHUFFLE_BUFFER_SIZE,
  )


_register()
