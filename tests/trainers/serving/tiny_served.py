"""Tiny served models for the serving tests, what offline decoding and scoring give for
them, and requests to an app in this process."""

import asyncio

import httpx
import jax
import numpy as np
import pytest
import seqio

from model_zoo import dense, models
from model_zoo.decoding.sampling import greedy
from tests.tiny import tiny_config
from trainers import text_prediction
from trainers.infer_examples import Codec
from trainers.serving.replica import ServedModel

VOCAB = seqio.ByteVocabulary()
CODEC = Codec(VOCAB, VOCAB, prompt_eos=False, target_eos=True)
LENGTH = 24


def served(name: str, seed: int, slo_s=None) -> ServedModel:
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config(vocab_size=264, num_layers=4)))
  tokens = np.ones((1, LENGTH), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  params = model.init(jax.random.PRNGKey(seed), batch)
  return ServedModel(name, model, params, CODEC, LENGTH, slo_s)


def client(app) -> httpx.AsyncClient:
  return httpx.AsyncClient(
      transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test"
  )


def offline_generate(m: ServedModel, prompts):
  batch = m.model.prompt_batch([CODEC.encode_prompt(p) for p in prompts], len(prompts), LENGTH)
  tokens, scores = m.model.predict_batch(m.params, batch, decoder=greedy())
  texts = [text_prediction.decode_tokens(VOCAB, row, m.model.eos_id) for row in np.asarray(tokens)]
  return texts, np.asarray(scores)


def offline_score(m: ServedModel, prompts, targets):
  batch = m.model.scoring_batch(
      [CODEC.encode_prompt(p) for p in prompts],
      [CODEC.encode_target(t) for t in targets],
      len(prompts),
      LENGTH,
  )
  return np.asarray(m.model.score_batch(m.params, batch))


def request(app, method, path, **kw):
  async def send():
    async with client(app) as c:
      return await c.request(method, path, **kw)

  return asyncio.run(send())


def assert_concurrent_answers_are_offline_ones(app, models_ab) -> list[str]:
  """Sends generate requests for models a and b and score requests for a, all at once, and
  checks each answer against offline decoding and scoring; returns the prompts."""
  prompts = ["hello", "ab", "zoo pod", "x"]
  targets = ["world", "cd", "!", "yz"]

  async def send():
    async with client(app) as c:
      calls = []
      for i, prompt in enumerate(prompts):
        for name in ("a", "b"):
          calls.append(c.post("/v1/generate", json={"model": name, "prompts": [prompt]}))
        calls.append(
            c.post("/v1/score", json={"model": "a", "prompts": [prompt], "targets": [targets[i]]})
        )
      return await asyncio.gather(*calls)

  responses = asyncio.run(send())
  assert [r.status_code for r in responses] == [200] * len(responses)
  by_model = {"a": models_ab[0], "b": models_ab[1]}
  offline = {name: offline_generate(m, prompts) for name, m in by_model.items()}
  scores = offline_score(by_model["a"], prompts, targets)
  for i in range(len(prompts)):
    for j, name in enumerate(("a", "b")):
      texts, expected = offline[name]
      output = responses[3 * i + j].json()["outputs"][0]
      assert output["output"] == texts[i]
      assert output["score"] == pytest.approx(float(expected[i]), abs=1e-4)
    assert responses[3 * i + 2].json()["scores"] == pytest.approx([scores[i]], abs=1e-4)
  return prompts
