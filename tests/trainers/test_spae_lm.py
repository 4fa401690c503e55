"""trainers.spae_lm's pieces: the LM must own the codebook, shots cover every word, and the
prompts it builds are the in-context library's."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from model_zoo import dense, models
from model_zoo.errors import ConfigError
from model_zoo.spae import in_context
from tests.model_zoo import tiny_lm
from tests.model_zoo.spae.tiny_spae import image_batch, tiny_spae
from trainers import spae_lm

MARKER, SEPARATOR = [7], [8]  # the fake vocabulary's ":" and ";"


def encode_text(text):
  return {":": MARKER, ";": SEPARATOR}[text]


@pytest.fixture(scope="module")
def spae_and_lm():
  lm = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_lm.TINY))
  lm_params = tiny_lm.params_for(tiny_lm.TINY)
  spae = tiny_spae(vocab_size=32, lm_embed_dim=16, latent_dim=16)
  params = nn.unbox(jax.jit(spae.init)(jax.random.PRNGKey(0), image_batch()))
  params["codebook"]["embedding"] = lm_params["token_embedder"]["embedding"]
  return spae, params, lm, lm_params


def test_an_lm_other_than_the_codebooks_is_refused(spae_and_lm):
  spae, params, lm, lm_params = spae_and_lm
  other = jax.tree.map(lambda x: x, lm_params)
  other["token_embedder"] = {"embedding": lm_params["token_embedder"]["embedding"] + 1e-3}
  with pytest.raises(ConfigError, match="not the SPAE model's codebook"):
    spae_lm.SpaeWithLm(spae, params, lm, other, encode_text)
  with pytest.raises(ConfigError, match="vocabulary of 32 ids .* one of 64"):
    spae_lm.SpaeWithLm(
        tiny_spae(vocab_size=64, lm_embed_dim=16, latent_dim=16), params, lm, lm_params, encode_text
    )
  with pytest.raises(ConfigError, match="context_depth=4 must be 1..3"):
    spae_lm.SpaeWithLm(spae, params, lm, lm_params, encode_text, context_depth=4)


def test_classify_scores_the_few_shot_prompts_of_the_first_layers(spae_and_lm):
  spae, params, lm, lm_params = spae_and_lm
  both = spae_lm.SpaeWithLm(spae, params, lm, lm_params, encode_text, context_depth=2)
  images = image_batch(rows=4)["image"]
  shots = [(images[0], (20,)), (images[1], (21, 22))]
  candidates = [(20,), (21, 22)]
  got, prior = both.classify(shots, images[2:], candidates)
  ids = np.asarray(jax.jit(spae.encode)(params, images))
  assert both.image_ids(images).shape == (4, 5)  # layers 1 and 2: 1 + 4 tokens
  prompts = [[*ids[0, :5], 7, 20, 8, *ids[1, :5], 7, 21, 22, 8, *ids[q, :5], 7] for q in (2, 3)]
  want = in_context.rank_classify(lm, lm_params, prompts, candidates)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_shots_take_the_first_examples_of_every_word():
  image = np.zeros((2, 2, 3))
  examples = [(image + i, (10 + i % 3,)) for i in range(9)]
  shots = spae_lm.shots_per_word(examples, 2, seed=0)
  assert sorted(int(s[0][0, 0, 0]) for s in shots) == [0, 1, 2, 3, 4, 5]
  assert sorted(w for _, w in shots) == [(10,), (10,), (11,), (11,), (12,), (12,)]
  with pytest.raises(ConfigError, match="3 words have fewer than spae_lm.shots_per_class=4"):
    spae_lm.shots_per_word(examples, 4, seed=0)


class FixedScores:
  """classify() of a 3-word LM that always prefers word (1,) by 2 nats over the image's."""

  def classify(self, shots, queries, candidates):
    scores = np.zeros((len(queries), len(candidates)))
    for row, query in enumerate(queries):
      scores[row, int(query[0, 0, 0])] += 1.0  # the image's own word
      scores[row, 1] += 2.0
    return scores, np.array([0.0, 2.0, 0.0])


class Vocabulary:

  def decode(self, ids):
    return f"w{ids[0]}"


def test_calibration_subtracts_the_lms_prior_over_the_words():
  image = np.zeros((2, 2, 3))
  shots = [(image, (w,)) for w in (0, 1, 2)]
  queries = [(image + w, (w,)) for w in (0, 0, 0, 2, 1)]
  report = spae_lm._classify(FixedScores(), shots, queries, Vocabulary())
  assert report["accuracy"] == pytest.approx(1 / 5)  # always word 1
  assert report["calibrated_accuracy"] == 1.0
  assert report["majority_class"] == pytest.approx(3 / 5)
  assert report["words"] == ["w0", "w1", "w2"]
