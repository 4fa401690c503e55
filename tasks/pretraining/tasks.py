"""Pre-training tasks over the catalog documents (text.py), in one vocabulary with Flan and MT.

- `catalog_lm`: a causal LM ("targets" only; the `decoder` converter of a decoder-only LM).
- `catalog_ul2_{r,x_long,x_dense,s}` and the `catalog_ul2` mixture: UL2's mixture of
  denoisers over the same documents ("inputs" and "targets": a prefix LM or an
  encoder-decoder), as tasks/ul2 builds over Genesis.
Both read the same documents, so a causal LM and a UL2 model trained for the same steps on
rows of the same length see the same text at the same compute. Importing this module
registers them all; importing it again is harmless.
"""

import functools

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from tasks.parallel import corpus
from tasks.pretraining import text, vocabulary
from tasks.ul2 import tasks as ul2_tasks

LM_TASK = "catalog_lm"
UL2_MIXTURE = "catalog_ul2"


def _register() -> None:
  vocab = vocabulary.pretraining_vocabulary()
  source = ul2_tasks.text_source(text.documents, corpus.SPLITS)
  if LM_TASK not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        LM_TASK,
        source=source,
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            seqio.preprocessors.tokenize,
            seqio.CacheDatasetPlaceholder(),
            seqio.preprocessors.append_eos_after_trim,
        ],
        output_features={"targets": seqio.Feature(vocab, add_eos=True)},
        metric_fns=[],
        shuffle_buffer_size=1024,
    )
  rates = ul2_tasks.add_denoising_tasks(
      UL2_MIXTURE,
      source,
      vocab,
      {mode: vocabulary.mode_id(mode) for mode in vocabulary.MODES},
      num_sentinels=vocabulary.NUM_SENTINELS,
  )
  if UL2_MIXTURE not in seqio.MixtureRegistry.names():
    ul2_tasks.register_mixture(UL2_MIXTURE, rates)


_register()
