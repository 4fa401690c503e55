"""The predict_fn adapter (what back-translation calls): predict_batch, turned into text -> text."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from model_zoo import dense, models
from tasks import pipeline
from tasks.mt import features
from tasks.parallel import corpus, vocabulary
from tests.tasks import test_mt
from tests.tiny import tiny_config
from trainers import predict_fns

VOCAB = vocabulary.parallel_vocabulary()
TINY = tiny_config(
    vocab_size=vocabulary.VOCAB_SIZE,
    num_heads=2,
    num_kv_heads=1,
    head_dim=16,
    num_layers=1,
    num_encoder_layers=1,
)
MAX_LENGTH, ROWS = 12, 4
EOS = 1


def tiny_model(kind: str):
  if kind == "encdec":
    return models.EncoderDecoderModel(dense.EncoderDecoder(TINY))
  return models.DecoderOnlyModel(dense.DecoderOnlyLM(TINY), feature_converter="prefix_lm")


def reference_batch(kind: str, prompts: list[list[int]]) -> dict[str, np.ndarray]:
  """The batch layout of the encdec / prefix-LM feature converters, written out by hand."""
  if kind == "encdec":
    encoder = np.zeros((ROWS, MAX_LENGTH), np.int32)
    for i, ids in enumerate(prompts):
      encoder[i, : len(ids)] = ids
    zeros = np.zeros((ROWS, MAX_LENGTH), np.int32)
    return {
        "encoder_input_tokens": encoder,
        "decoder_input_tokens": zeros,
        "decoder_target_tokens": zeros,
    }
  inputs = np.zeros((ROWS, 2 * MAX_LENGTH), np.int32)
  causal = np.zeros_like(inputs)
  for i, ids in enumerate(prompts):
    inputs[i, 1 : len(ids) + 1] = ids  # after BOS (0)
    causal[i, : len(ids) + 1] = 1
  return {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": np.zeros_like(inputs),
      "decoder_causal_attention": causal,
  }


def text_of(row: np.ndarray) -> str:
  ids = row.tolist()
  ids = ids[: ids.index(EOS)] if EOS in ids else ids
  return VOCAB.tokenizer.decode([i for i in ids if i > 0])


@pytest.mark.parametrize("kind", ["encdec", "prefix_lm"])
def test_adapter_outputs_are_predict_batch_on_the_mt_inputs(kind):
  model = tiny_model(kind)
  texts = corpus.monolingual("en", "validation")[:6]
  texts[2] = " ".join(texts[:4])  # longer than MAX_LENGTH tokens: cut
  any_batch = reference_batch(kind, [])  # parameter shapes do not depend on the batch
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), any_batch))
  rs = np.random.RandomState(0)
  params = jax.tree.map(lambda s: rs.normal(0, 0.5, s.shape).astype(s.dtype), shapes)

  predict_fn = predict_fns.text_predict_fn(
      model,
      params,
      VOCAB,
      prompt_prefix=features.prompt_prefix(VOCAB, "de"),
      prompt_eos=features.INPUTS_ADD_EOS,
      max_length=MAX_LENGTH,
      batch_size=ROWS,
  )
  outputs = predict_fn(texts)

  tag = VOCAB.tokenizer.piece_to_id("<2de>")
  prompts = [[tag, *VOCAB.encode(text)][:MAX_LENGTH] for text in texts]
  assert len(prompts[2]) == MAX_LENGTH < 1 + len(VOCAB.encode(texts[2]))
  predict = jax.jit(lambda p, b: model.predict_batch(p, b)[0])
  expected = []
  for start in range(0, len(texts), ROWS):
    tokens = np.asarray(predict(params, reference_batch(kind, prompts[start : start + ROWS])))
    expected += [text_of(row) for row in tokens[: len(texts[start : start + ROWS])]]
  assert outputs == expected
  assert len(set(outputs)) > 1 and all(outputs)  # the check compares real, varied text


def test_the_mt_prompt_prefix_needs_the_tag_of_its_output_language(tmp_path):
  assert features.prompt_prefix(VOCAB, "de") == [VOCAB.tokenizer.piece_to_id("<2de>")]
  with pytest.raises(ValueError, match="languages"):
    features.prompt_prefix(VOCAB, "xx")
  no_tags = test_mt.vocabulary_without_tags(tmp_path)
  with pytest.raises(pipeline.DataError, match=r"\['<2de>'\]"):
    features.prompt_prefix(no_tags, "de")
