"""SentencePiece vocabularies trained from local text, cached by content.

podzoo downloads nothing: a task's vocabulary is trained from its own text the first time
it is needed and reused afterwards. Ids follow the T5/SeqIO convention (0 pad, 1 EOS,
2 UNK, no BOS), which `seqio.SentencePieceVocabulary` and the feature converters assume.
"""

import hashlib
import io
import json
import os
import re
import pathlib
from typing import Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import sentencepiece as spm

from model_zoo.errors import ConfigError, MissingFileError
from tasks import cache

_IDS = {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}


def train_sentencepiece(
    text_paths: Sequence[str | os.PathLike],
    model_prefix: str | os.PathLike,
    vocab_size: int,
    *,
    model_type: str = "unigram",
    byte_fallback: bool = True,
    user_defined_symbols: Sequence[str] = (),
    character_coverage: float = 0.9995,
) -> str:
  """Trains a model on `text_paths` (one sentence a line); returns `<model_prefix>.model`.

  `character_coverage` is the share of the text's characters that must be pieces of their
  own (SentencePiece's default, 0.9995); the rarest rest are spelt in bytes (byte fallback)
  or UNK. Training is deterministic: one thread, every input sentence used (no sampling), and
  the model is built in memory, so no temporary path is recorded in it; the same text
  and options give the same bytes anywhere. `<prefix>.model` and `<prefix>.vocab`
  (piece, score) are each written atomically, the model last.
  """
  if not text_paths:
    raise ConfigError("train_sentencepiece needs at least one text file; got none")
  for path in text_paths:
    if not os.path.isfile(path):
      raise MissingFileError(f"train_sentencepiece: text file {str(path)!r} does not exist")
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        input=[os.fspath(p) for p in text_paths],
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=byte_fallback,
        user_defined_symbols=list(user_defined_symbols),
        character_coverage=character_coverage,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
        **_IDS,
    )
  except RuntimeError as e:  # sentencepiece's checks of the options, e.g. a vocab_size too high
    too_high = re.search(
        r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", str(e)
    )
    if too_high:
      raise ConfigError(
          f"vocab_size={too_high.group(1)} is more pieces than this text allows; use at most "
          f"{too_high.group(2)} (e.g. --vocab_size {too_high.group(2)}), or train on more text."
      ) from e
    raise ConfigError(
        f"train_sentencepiece(vocab_size={vocab_size}, model_type={model_type!r}) failed: "
        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
    ) from e
  processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
  vocab = "".join(
      f"{_one_line(processor.id_to_piece(i))}\t{processor.get_score(i):g}\n"
      for i in range(processor.get_piece_size())
  )
  prefix = os.fspath(model_prefix)
  pathlib.Path(prefix).parent.mkdir(parents=True, exist_ok=True)
  cache.atomic_write(prefix + ".vocab", vocab.encode("utf-8"))
  cache.atomic_write(prefix + ".model", model.getvalue())
  return prefix + ".model"


def _one_line(piece: str) -> str:
  """A piece as one line of the .vocab file: a user symbol may be a line break or a tab."""
  return piece.replace("\n", "\\n").replace("\t", "\\t")


def cached_sentencepiece_vocabulary(
    text_paths: Sequence[str | os.PathLike],
    vocab_size: int,
    *,
    cache_dir: str | os.PathLike | None = None,
    **kw,
) -> seqio.SentencePieceVocabulary:
  """A SeqIO vocabulary trained on `text_paths`, trained only if not already cached.

  The cache key hashes the files' contents (in order), `vocab_size`, the options `kw`
  (those of `train_sentencepiece`) and the sentencepiece version, so editing the text or
  an option trains a new model and nothing stale is reused. The default cache is
  `$PODZOO_CACHE/vocab` (`~/.cache/podzoo/vocab`).
  """
  key = hashlib.sha256()
  for path in text_paths:
    data = pathlib.Path(path).read_bytes()
    key.update(len(data).to_bytes(8, "little") + data)
  options = {"vocab_size": vocab_size, "sentencepiece": spm.__version__, **kw}
  key.update(json.dumps(options, sort_keys=True).encode())
  directory = pathlib.Path(cache_dir) if cache_dir is not None else cache.cache_dir("vocab")
  prefix = directory / f"spm{vocab_size}_{key.hexdigest()[:16]}"
  model_path = str(prefix) + ".model"
  if not os.path.exists(model_path):
    print(
        f"Training a {vocab_size}-piece sentencepiece vocabulary on first use (cached as "
        f"{model_path})...",
        flush=True,
    )
    model_path = train_sentencepiece(text_paths, prefix, vocab_size, **kw)
  return seqio.SentencePieceVocabulary(model_path)
