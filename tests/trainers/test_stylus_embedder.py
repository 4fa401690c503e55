"""The Stylus embedder: each text's vector is the mean of the LM's last-layer hidden states
over its own positions (a NumPy mean of the captured states), unit length, unchanged by what
else shares its batch; the name follows the parameters."""

import jax
import numpy as np
import pytest
from flax.core import meta

from model_zoo import dense, models
from model_zoo.errors import ConfigError
from tests.tiny import tiny_config
from trainers.stylus.embedder import Embedder


def _encode(text):
  return [2 + (ord(c) % 60) for c in text]


@pytest.fixture(scope="module")
def embedder():
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config()), feature_converter="prefix_lm")
  tokens = np.ones((1, 8), np.int32)
  params = meta.unbox(
      model.init(
          jax.random.PRNGKey(0), {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
      )
  )
  return Embedder(model, params, _encode, max_length=16, batch_size=4)


def test_a_vector_is_the_mean_of_its_texts_hidden_states(embedder):
  text = "a castle"
  ids = _encode(text)
  batch = embedder.model.scoring_batch([ids], [[]], 4, 16)
  hidden = np.asarray(embedder._hidden(embedder.params, batch), np.float64)[0]
  want = hidden[: len(ids) + 1].mean(axis=0)
  want /= np.linalg.norm(want)
  np.testing.assert_allclose(embedder.embed([text])[0], want, rtol=1e-5, atol=1e-6)


def test_vectors_do_not_depend_on_batch_neighbours(embedder):
  texts = ["fog", "a long line of words here", "x", "moon", "dark night", "fog"]
  together = embedder.embed(texts)
  alone = np.stack([embedder.embed([t])[0] for t in texts])
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(together[0], together[5])
  assert not np.allclose(together[0], together[3])


def test_the_name_follows_the_parameters_and_empty_texts_are_named(embedder):
  other = Embedder(
      embedder.model, jax.tree.map(lambda x: x * 1.01, embedder.params), _encode, 16, 4
  )
  assert embedder.name.startswith("podzoo-mean-pool:") and other.name != embedder.name
  with pytest.raises(ConfigError, match="empty text"):
    embedder.embed(["fine", ""])
