"""The batch layouts a Model builds for decoding and scoring, checked against hand-written rows
(tests/trainers/test_data.py compares them with SeqIO's converters)."""

import jax
import numpy as np
import pytest

from model_zoo import feature_converters as fc
from model_zoo.errors import ConfigError
from tests.trainers import helpers


def test_left_and_right_padded_prompts_give_the_same_batch_and_decodes():
  right = np.array([[5, 6, 7, 0], [9, 0, 0, 0], [3, 4, 0, 0]], np.int32)
  left = np.array([[0, 5, 6, 7], [0, 0, 0, 9], [0, 0, 3, 4]], np.int32)
  assert fc.strip_padding(right, "right") == [[5, 6, 7], [9], [3, 4]]
  assert fc.strip_padding(left, "left") == [[5, 6, 7], [9], [3, 4]]
  model = helpers.tiny_model()
  a = model.prompt_batch(fc.strip_padding(right, "right"), 3, 10)
  b = model.prompt_batch(fc.strip_padding(left, "left"), 3, 10)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  np.testing.assert_array_equal(a["decoder_input_tokens"][0, :5], [0, 5, 6, 7, 0])
  np.testing.assert_array_equal(a["decoder_causal_attention"].sum(-1), [4, 2, 3])
  params = jax.tree.map(
      lambda x: x.value if hasattr(x, "value") else x,
      model.init(jax.random.PRNGKey(0), a),
      is_leaf=lambda x: hasattr(x, "names"),
  )
  predict = jax.jit(model.predict_batch)
  np.testing.assert_array_equal(predict(params, a)[0], predict(params, b)[0])


def test_a_prompt_longer_than_the_decode_length_is_refused_by_name():
  with pytest.raises(ValueError, match="Prompt 0 has 5 tokens but the decode length is 4"):
    fc.DecoderFeatureConverter.prompt_batch([[1, 2, 3, 4, 5]], 1, 4)
  with pytest.raises(ValueError, match="padding='middle'"):
    fc.strip_padding(np.zeros((1, 2), np.int32), "middle")


def test_decoder_scoring_batch_weights_only_the_target():
  batch = fc.DecoderFeatureConverter.scoring_batch([[7, 8], [5]], [[3, 1], [4, 4, 1]], 3, 6)
  np.testing.assert_array_equal(
      batch["decoder_target_tokens"], [[7, 8, 3, 1, 0, 0], [5, 4, 4, 1, 0, 0], [0] * 6]
  )
  np.testing.assert_array_equal(
      batch["decoder_input_tokens"], [[0, 7, 8, 3, 1, 0], [0, 5, 4, 4, 1, 0], [0] * 6]
  )
  np.testing.assert_array_equal(
      batch["decoder_loss_weights"], [[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0], [0] * 6]
  )
  np.testing.assert_array_equal(
      batch["decoder_causal_attention"], [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0] * 6]
  )
  # Reading a row back gives the target (a causal LM's rows carry no prompt) ...
  row = {k: v[1] for k, v in batch.items()}
  assert fc.DecoderFeatureConverter.row_tokens(row) == ([], [4, 4, 1])
  # ... and a prefix LM's row gives the prompt too.
  assert fc.PrefixLMFeatureConverter.row_tokens(row) == ([5], [4, 4, 1])


def test_encdec_batches_put_the_prompt_in_the_encoder():
  batch = fc.EncDecFeatureConverter.scoring_batch([[7, 8, 9]], [[3, 1]], 2, 4)
  np.testing.assert_array_equal(batch["encoder_input_tokens"], [[7, 8, 9, 0], [0] * 4])
  np.testing.assert_array_equal(batch["decoder_target_tokens"], [[3, 1, 0, 0], [0] * 4])
  np.testing.assert_array_equal(batch["decoder_input_tokens"], [[0, 3, 1, 0], [0] * 4])
  assert fc.EncDecFeatureConverter.row_tokens({k: v[0] for k, v in batch.items()}) == (
      [7, 8, 9],
      [3, 1],
  )
  prompt = fc.EncDecFeatureConverter.prompt_batch([[7, 8]], 1, 4)
  assert not prompt["decoder_target_tokens"].any()


def test_lengths_and_room_for_the_prompt():
  lengths = {"inputs": 12, "targets": 5}
  assert fc.EncDecFeatureConverter.decode_length(lengths) == 12
  assert fc.PrefixLMFeatureConverter.decode_length(lengths) == 17
  assert fc.EncDecFeatureConverter.prompt_room(12, 5, scoring=True)[0] == 12
  assert fc.DecoderFeatureConverter.prompt_room(12, 5, scoring=True)[0] == 7
  assert fc.DecoderFeatureConverter.prompt_room(12, 5, scoring=False)[0] == 11


def test_loss_weights_default_to_non_padding_targets_and_without_loss_zeroes_them():
  batch = {"decoder_target_tokens": np.array([[4, 5, 0]]), "decoder_input_tokens": np.zeros((1, 3))}
  np.testing.assert_array_equal(fc.loss_weights(batch), [[1, 1, 0]])
  np.testing.assert_array_equal(
      fc.loss_weights({**batch, "decoder_loss_weights": np.array([[0, 1, 0]])}), [[0, 1, 0]]
  )
  assert not fc.loss_weights(fc.DecoderFeatureConverter.without_loss(batch)).any()


def test_the_asr_layout_holds_each_utterances_frames_and_reads_them_back():
  asr = fc.AsrFeatureConverter
  rng = np.random.default_rng(0)
  prompts = [rng.normal(size=(n, asr.num_mel_bins)).astype(np.float32) for n in (5, 2)]
  batch = asr.scoring_batch(prompts, [[7, 8, 1], [9, 1]], rows=3, length=4, prompt_length=6)
  assert batch["encoder_input_features"].shape == (3, 6, asr.num_mel_bins)
  np.testing.assert_array_equal(batch["encoder_input_mask"].sum(axis=1), [5, 2, 0])
  np.testing.assert_array_equal(batch["decoder_input_tokens"][0], [0, 7, 8, 1])
  row = {k: v[1] for k, v in batch.items()}
  frames, target = asr.row_tokens(row)
  np.testing.assert_array_equal(frames, prompts[1])
  assert target == [9, 1]
  empty = asr.prompt_batch([], rows=2, length=4, prompt_length=6)  # shapes for parameters
  assert empty["encoder_input_features"].shape == (2, 6, asr.num_mel_bins)


def test_the_asr_layout_refuses_a_missing_frame_count_and_other_mel_bins():
  asr = fc.AsrFeatureConverter
  with pytest.raises(ConfigError, match=r"TASK_FEATURE_LENGTHS\['inputs'\]"):
    asr.prompt_batch([], rows=2, length=4)
  with pytest.raises(ConfigError, match=r"expected \[frames, 80\]"):
    asr.prompt_batch([np.zeros((3, 40), np.float32)], rows=2, length=4, prompt_length=6)
