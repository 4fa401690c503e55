"""Stylus on a constructed catalog where the right adapter is known: on a tiny LM, one adapter
learns to count up the alphabet, one to count down, and one is noise. For a prompt that counts
up, the composer keeps the up adapter alone; for a prompt of two keywords, one each; and the
base with the chosen adapters merged continues held-out prompts far better than the base."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from model_zoo import dense, models
from model_zoo.layers import lora
from tests.tiny import tiny_config
from trainers import adapters
from trainers.stylus import refiner
from trainers.stylus.embedder import Embedder
from trainers.stylus.generate import Stylus, prompt_masks
from trainers.stylus.retriever import INDEX_FILE

LETTERS = "abcdefghijklmnopqrstuvwxyz"
CONFIG = lora.LoraConfig(rank=8, alpha=8.0, target_patterns=(r"mlp/w.*/kernel$",))
SCALE = CONFIG.alpha / CONFIG.rank


def encode(text):
  return [2 + LETTERS.index(c) for c in text if c in LETTERS]


def run_of(start: int, step: int, length: int) -> str:
  return "".join(LETTERS[(start + step * i) % 26] for i in range(length))


def _fresh(boxed, seed):
  return meta.unbox(
      lora.split_adapters(lora.init_adapters(jax.random.PRNGKey(seed), boxed, CONFIG))[1]
  )


def _train(model, base, boxed, step, seed):
  """Adapters on the base that learn runs counting by `step`: only A and B move."""
  ad = _fresh(boxed, seed)
  rows = [encode(run_of(start, step, 12)) for start in range(26)]
  batch = model.scoring_batch([[]] * len(rows), rows, len(rows), 12)
  loss = lambda a: -jnp.mean(model.score_batch(lora.merge_weighted(base, [(a, SCALE)]), batch))
  optimizer = optax.adam(1e-2)
  state = optimizer.init(ad)

  @jax.jit
  def update(a, state):
    grads = jax.grad(loss)(a)
    changes, state = optimizer.update(grads, state)
    return optax.apply_updates(a, changes), state

  for _ in range(150):
    ad, state = update(ad, state)
  return jax.device_get(ad)


@pytest.fixture(scope="module")
def stylus(tmp_path_factory):
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config()))
  tokens = np.ones((1, 8), np.int32)
  boxed = model.init(
      jax.random.PRNGKey(0), {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  )
  base = meta.unbox(boxed)
  noise = jax.tree.map(
      lambda x: np.random.default_rng(0).normal(size=x.shape).astype(np.float32) * 0.3,
      _fresh(boxed, 0),
  )
  trained = {"up": _train(model, base, boxed, 1, 1), "down": _train(model, base, boxed, -1, 2)}
  catalog_dir = tmp_path_factory.mktemp("catalog")
  descriptions = {"up": "counts up", "down": "counts down", "noise": "random"}
  for name, ad in {**trained, "noise": noise}.items():
    card = adapters.card_for(lora.join_adapters(base, ad), CONFIG, description=descriptions[name])
    adapters.save(str(catalog_dir / name), ad, card)
  cards = {name: adapters.read_card(str(catalog_dir / name)) for name in descriptions}
  embedder = Embedder(model, base, encode)
  index = refiner.build_index(cards, lambda c: c["description"], embedder.embed, embedder.name)
  index.save(str(catalog_dir / INDEX_FILE))
  return Stylus(model, base, str(catalog_dir), encode, top_k=3, per_keyword=1)


@pytest.mark.slow
def test_the_composer_keeps_the_right_adapter_for_each_keyword(stylus):
  choice = stylus.choose("cdefgh")
  assert {name for name, _ in choice.retrieved} == {"up", "down", "noise"}
  assert choice.composition.assignment == {"cdefgh": ["up"]}
  assert set(choice.composition.rejected) == {"down", "noise"}

  choice = stylus.choose("mnopqr, wvutsr")
  assert choice.composition.assignment == {"mnopqr": ["up"], "wvutsr": ["down"]}
  assert choice.composition.rejected == ["noise"]
  (mask,) = prompt_masks(choice, 0, 0)
  assert mask == {"mnopqr": ("up",), "wvutsr": ("down",)}


def _accuracy(stylus, params_of, step):
  """Mean share of the 4 generated letters that continue held-out runs (4 letters given)."""
  right = []
  for start in range(0, 26, 3):
    run = run_of(start, step, 8)
    ids, _ = stylus.continue_prompt(params_of(run[:4]), encode(run[:4]), 8)
    right.append(np.mean(np.array(ids[:4]) == np.array(encode(run[4:]))))
  return float(np.mean(right))


@pytest.mark.slow
@pytest.mark.parametrize("step", [1, -1])
def test_generation_with_the_chosen_adapter_beats_the_base(stylus, step):
  chosen = lambda prompt: stylus.params_for(prompt_masks(stylus.choose(prompt), 0, 0)[0])
  with_stylus = _accuracy(stylus, chosen, step)
  base = _accuracy(stylus, lambda prompt: stylus.params, step)
  assert with_stylus >= 0.9 and base <= 0.2, (with_stylus, base)
