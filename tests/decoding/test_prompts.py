"""Prompts given as left- or right-padded arrays decode the same."""

import jax
import numpy as np
import pytest

from tests.trainers import helpers
from trainers import text_prediction


def test_left_and_right_padded_prompts_give_the_same_batch_and_decodes():
  right = np.array([[5, 6, 7, 0], [9, 0, 0, 0], [3, 4, 0, 0]], np.int32)
  left = np.array([[0, 5, 6, 7], [0, 0, 0, 9], [0, 0, 3, 4]], np.int32)
  a = text_prediction.padded_prompt_batch(right, 10, "right")
  b = text_prediction.padded_prompt_batch(left, 10, "left")
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  np.testing.assert_array_equal(a["decoder_input_tokens"][0, :5], [0, 5, 6, 7, 0])
  np.testing.assert_array_equal(a["decoder_causal_attention"].sum(-1), [4, 2, 3])
  model = helpers.tiny_model()
  params = jax.tree.map(
      lambda x: x.value if hasattr(x, "value") else x,
      model.init(jax.random.PRNGKey(0), a),
      is_leaf=lambda x: hasattr(x, "names"),
  )
  predict = jax.jit(model.predict_batch)
  np.testing.assert_array_equal(predict(params, a)[0], predict(params, b)[0])


def test_a_prompt_longer_than_the_decode_length_is_refused_by_name():
  with pytest.raises(ValueError, match="Prompt 0 has 5 tokens but the decode length is 4"):
    text_prediction.prompt_batch([[1, 2, 3, 4, 5]], 4, 1)
  with pytest.raises(ValueError, match="padding='middle'"):
    text_prediction.padded_prompt_batch(np.zeros((1, 2), np.int32), 4, "middle")
