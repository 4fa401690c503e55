"""The UL2 vocabulary: SentencePiece over Genesis plus mode tokens and span sentinels.

UL2 tells the model which denoiser made an example with a paradigm ("mode") token at the
start of the inputs; we keep UL2's names. They are SentencePiece user-defined symbols, so
each is one id that ordinary text never produces. Span corruption replaces each dropped
span by a sentinel; as in T5 the sentinels are SeqIO `extra_ids`, appended after the
trained pieces and numbered from the top: `<extra_id_0>` is `vocab_size - 1`.
"""

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from model_zoo.errors import ConfigError
from tasks import quickstart, vocabularies

# Denoiser -> UL2's mode token: R (regular span corruption) is tagged as NLU, X (extreme
# corruption) as NLG, S (prefix LM, sequential denoising) as S2S.
MODE_TOKENS = {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}
BASE_VOCAB_SIZE = 1024  # trained pieces, mode tokens and PAD/EOS/UNK included
NUM_SENTINELS = 100
VOCAB_SIZE = BASE_VOCAB_SIZE + NUM_SENTINELS


def ul2_vocabulary() -> seqio.SentencePieceVocabulary:
  """1024 pieces trained on the book's train split (cached after the first call) + 100 sentinels."""
  base = vocabularies.cached_sentencepiece_vocabulary(
      [quickstart.train_text_file()],
      BASE_VOCAB_SIZE,
      user_defined_symbols=tuple(MODE_TOKENS.values()),
  )
  return seqio.SentencePieceVocabulary(base.sentencepiece_model_file, extra_ids=NUM_SENTINELS)


def mode_id(vocabulary: seqio.SentencePieceVocabulary, mode: str) -> int:
  """The id of the mode token of denoiser `mode` ("R", "X" or "S")."""
  if mode not in MODE_TOKENS:
    raise ConfigError(f"unknown UL2 denoiser {mode!r}; expected one of {sorted(MODE_TOKENS)}")
  piece = MODE_TOKENS[mode]
  token = vocabulary.tokenizer.piece_to_id(piece)
  if token == vocabulary.unk_id:
    raise ConfigError(f"{vocabulary} has no piece {piece!r}; train it with it as a user symbol")
  return token
