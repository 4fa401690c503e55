"""The pre-training vocabulary: the parallel corpus' pieces, then UL2's mode tokens and sentinels.

A model pre-trained here is fine-tuned on the Flan and MT tasks, so it must read their
token ids: the pieces are the parallel vocabulary's own, unchanged. UL2 needs three mode
tokens and span sentinels besides; both are SeqIO extra_ids appended after the pieces
(a new id each, never produced by text). The sentinels count down from the top, as in T5
(`<extra_id_0>` is the last id); the mode tokens take the three lowest extra ids.
"""

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from model_zoo.errors import ConfigError
from tasks.parallel import vocabulary as parallel_vocabulary

MODES = ("R", "X", "S")  # UL2's denoisers; their tokens in this order from the lowest extra id
NUM_SENTINELS = 100
VOCAB_SIZE = parallel_vocabulary.VOCAB_SIZE + len(MODES) + NUM_SENTINELS
# The models' embedding rows: VOCAB_SIZE rounded up to a multiple of 128 (the rest unused).
MODEL_VOCAB_SIZE = 8320


def pretraining_vocabulary() -> seqio.SentencePieceVocabulary:
  base = parallel_vocabulary.parallel_vocabulary()
  return seqio.SentencePieceVocabulary(
      base.sentencepiece_model_file, extra_ids=len(MODES) + NUM_SENTINELS
  )


def mode_id(mode: str) -> int:
  """The id of UL2 denoiser `mode`'s token ("R", "X" or "S")."""
  if mode not in MODES:
    raise ConfigError(f"unknown UL2 denoiser {mode!r}; expected one of {list(MODES)}")
  return parallel_vocabulary.VOCAB_SIZE + MODES.index(mode)
