import importlib
import math
from collections import Counter

import pytest
import seqio

from tasks import pipeline, quickstart


def test_splits_partition_the_file():
  lines = quickstart.CORPUS_PATH.read_text(encoding="utf-8").splitlines()
  train, validation = quickstart.split_lines("train"), quickstart.split_lines("validation")
  assert len(lines) == 1533 and (len(train), len(validation)) == (1457, 76)
  assert set(train).isdisjoint(validation)
  rebuilt, t, v = [], iter(train), iter(validation)
  for i in range(len(lines)):
    rebuilt.append(next(v) if i % 20 == 19 else next(t))
  assert rebuilt == lines


def test_registered_once_with_1024_pieces():
  importlib.reload(quickstart)  # a second registration must be a no-op, not an error
  assert quickstart.TASK_NAME in seqio.TaskRegistry.names()
  assert pipeline.vocab_size("kjv_genesis_lm") == quickstart.QUICKSTART_VOCAB_SIZE == 1024
  with pytest.raises(pipeline.DataError, match="no output feature 'inputs'.*'targets'"):
    pipeline.vocab_size("kjv_genesis_lm", "inputs")


def test_unigram_entropy_matches_independent_computation():
  sp = pipeline.get_task_or_mixture("kjv_genesis_lm").output_features["targets"].vocabulary
  tokenizer = sp.tokenizer
  train = Counter(
      t for line in quickstart.split_lines("train") for t in tokenizer.encode(line) + [1]
  )
  valid = [t for line in quickstart.split_lines("validation") for t in tokenizer.encode(line) + [1]]
  n, v = sum(train.values()), 1024
  expected = -sum(math.log((train[t] + 1) / (n + v)) for t in valid) / len(valid)
  got = quickstart.unigram_entropy_nats()
  assert math.isclose(got, expected, rel_tol=1e-9)
  assert 4.0 < got < math.log(1024)
