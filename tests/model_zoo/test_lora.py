"""LoRA: with B = 0 the model is its base; the merged kernel is the LoRA forward
x W + s (x A) B of a NumPy reference on every adapted slice; merge then unmerge restores the
base; rank dropout is unbiased; the axis split rule; only adapters train (no optimizer state
for the base); mistakes named."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from model_zoo import dense, lora as lora_models, models
from model_zoo.errors import ConfigError
from model_zoo.layers import lora
from tests.tiny import tiny_config
from trainers import optimizers

ALL_DENSE = (r"(query|key|value|out|wi_0|wi_1|wo)/kernel$",)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  tokens = jnp.asarray(rng.integers(2, 64, size=(2, 8)), jnp.int32)
  return {
      "decoder_input_tokens": tokens,
      "decoder_target_tokens": tokens,
      "decoder_loss_weights": jnp.ones((2, 8), jnp.int32),
  }


def _models(scan=True, **lora_kwargs):
  base = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config(scan_layers=scan)))
  config = lora.LoraConfig(**{"rank": 4, "alpha": 8.0, **lora_kwargs})
  return base, lora_models.lora_model(base, config), config


def _random_b(params, seed=1):
  """Adapters with B drawn at random (B starts at zero)."""
  flat = lora.flat_params(params)
  rng = np.random.default_rng(seed)
  for path, x in flat.items():
    if path.endswith("/lora_b"):
      flat[path] = jnp.asarray(rng.normal(0, 0.3, x.shape), x.dtype)
  return lora.nested_params(flat)


@pytest.mark.parametrize("scan", [True, False])
def test_with_b_zero_the_adapted_model_is_its_base(scan):
  base, adapted, _ = _models(scan, target_patterns=ALL_DENSE)
  rng = jax.random.PRNGKey(0)
  base_params = meta.unbox(base.init(rng, _batch()))
  params = meta.unbox(adapted.init(rng, _batch()))
  kept, adapters = lora.split_adapters(params)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, kept, base_params))
  assert len(jax.tree_util.tree_leaves(adapters)) == 2 * 7 * (1 if scan else 2)
  np.testing.assert_array_equal(
      adapted._logits(params, _batch())[0], base._logits(base_params, _batch())[0]
  )


def _numpy_lora_outputs(x, w, a, b, scale, n_in):
  """x W and x W + s (x A) B for one kernel slice W [in..., out...], A [in..., r], B [r, out...]."""
  x_axes, w_axes = list(range(1, n_in + 1)), list(range(n_in))  # x [rows, in...]
  xw = np.tensordot(x, w, axes=(x_axes, w_axes))
  xa = np.tensordot(x, a, axes=(x_axes, w_axes))
  return xw + scale * np.tensordot(xa, b, axes=([xa.ndim - 1], [0]))


@pytest.mark.parametrize("scan", [True, False])
def test_the_merged_kernel_computes_the_lora_forward(scan):
  _, adapted, config = _models(scan, target_patterns=ALL_DENSE)
  params = _random_b(meta.unbox(adapted.init(jax.random.PRNGKey(0), _batch())))
  merged = lora.flat_params(lora.merge(params, config.scale))
  flat = lora.flat_params(params)
  rng = np.random.default_rng(2)
  checked = 0
  for path in [p for p in flat if p.endswith("/lora_a")]:
    kernel_path = path[: -len("lora_a")] + "kernel"
    w, a, b = (np.asarray(flat[p], np.float64) for p in (kernel_path, path, path[:-1] + "b"))
    n_in = a.ndim - 1 - (1 if scan else 0)
    slices = range(w.shape[0]) if scan else [None]
    for i in slices:
      pick = (lambda t: t[i]) if scan else (lambda t: t)
      x = rng.normal(size=(3, *pick(a).shape[:-1]))
      want = _numpy_lora_outputs(x, pick(w), pick(a), pick(b), config.scale, n_in)
      got = _numpy_lora_outputs(
          x, np.asarray(pick(merged[kernel_path]), np.float64), pick(a), 0 * pick(b), 0.0, n_in
      )
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
      checked += 1
  assert checked == 7 * 2
  assert not any(p.endswith(("lora_a", "lora_b")) for p in merged)


def test_merge_then_unmerge_restores_the_base():
  _, adapted, config = _models(target_patterns=ALL_DENSE)
  params = _random_b(meta.unbox(adapted.init(jax.random.PRNGKey(0), _batch())))
  base, adapters = lora.split_adapters(params)
  restored = lora.unmerge(lora.merge(params, config.scale), adapters, config.scale)
  for path, w in lora.flat_params(base).items():
    np.testing.assert_allclose(lora.flat_params(restored)[path], w, rtol=0, atol=1e-6, err_msg=path)
  changed = lora.flat_params(lora.merge(params, config.scale))
  assert not np.allclose(
      changed["decoder/layers/mlp/wo/kernel"],
      lora.flat_params(base)["decoder/layers/mlp/wo/kernel"],
  )


def test_rank_dropout_keeps_the_delta_unbiased_and_drops_whole_components():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  params = {"p": {"kernel": jnp.zeros((3, 5)), "lora_a": a, "lora_b": b}}
  draws = jax.vmap(lambda k: lora.merge(params, 1.0, 0.5, k)["p"]["kernel"])(
      jax.random.split(jax.random.PRNGKey(0), 4000)
  )
  np.testing.assert_allclose(np.mean(draws, 0), np.asarray(a @ b), atol=0.15)
  # each draw is 2 * sum of a subset of the rank-1 terms a[:, j] b[j]
  terms = np.einsum("ij,jk->jik", np.asarray(a), np.asarray(b))
  subsets = np.array(np.meshgrid(*[[0, 1]] * 4)).reshape(4, -1).T
  candidates = 2 * np.einsum("sj,jik->sik", subsets, terms)
  for draw in np.asarray(draws[:20]):
    assert np.min(np.abs(candidates - draw).max(axis=(1, 2))) < 1e-5
  no_rng = lora.merge(params, 1.0, 0.5)["p"]["kernel"]
  np.testing.assert_allclose(no_rng, a @ b, rtol=1e-6)


@pytest.mark.parametrize(
    "names,stack,inputs",
    [
        (("layers", "embed", "heads", "kv"), 1, 1),
        (("layers", "heads", "kv", "embed"), 1, 2),
        (("mlp", "embed"), 0, 1),
        (("embed", "vocab"), 0, 1),
        (("layers", "expert", "embed", "mlp"), 2, 1),
    ],
)
def test_kernel_axes_split_into_stack_in_and_out(names, stack, inputs):
  assert lora.kernel_split(names, "p") == lora.KernelSplit(stack, inputs)


def test_only_the_adapters_train_and_the_base_gets_no_optimizer_state():
  _, adapted, _ = _models()
  params = meta.unbox(adapted.init(jax.random.PRNGKey(0), _batch()))
  tx = optimizers.trainable_only(optax.adam(1e-2), trainable_patterns=[r"lora_[ab]$"])
  state = tx.init(params)
  state_size = sum(x.size for x in jax.tree_util.tree_leaves(state))
  adapter_size = sum(x.size for x in jax.tree_util.tree_leaves(lora.split_adapters(params)[1]))
  assert state_size <= 2 * adapter_size + 8  # adam's two moments (+ counts), none for the base
  grad_fn = jax.jit(jax.grad(lambda p: adapted.loss_fn(p, _batch())[0]))
  new = params
  for _ in range(3):
    updates, state = tx.update(grad_fn(new), state, new)
    new = optax.apply_updates(new, updates)
  old_base, old_adapters = lora.split_adapters(params)
  new_base, new_adapters = lora.split_adapters(new)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, new_base, old_base))
  assert all(
      not np.array_equal(x, y)
      for x, y in zip(
          jax.tree_util.tree_leaves(new_adapters), jax.tree_util.tree_leaves(old_adapters)
      )
  )
  assert adapted.loss_fn(new, _batch())[0] < adapted.loss_fn(params, _batch())[0]


def test_adapters_carry_the_kernels_logical_axes_and_an_unsharded_rank():
  _, adapted, _ = _models(target_patterns=(r"attention/out/kernel$",))
  boxed = lora.flat_params(adapted.init(jax.random.PRNGKey(0), _batch()), lora._is_boxed)
  assert boxed["decoder/layers/self_attention/out/lora_a"].names == ("layers", "heads", "kv", None)
  assert boxed["decoder/layers/self_attention/out/lora_b"].names == ("layers", None, "embed")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rank": 0}, "rank=0 must be an integer >= 1"),
        ({"alpha": 0.0}, "alpha=0.0 must be > 0"),
        ({"rank_dropout_rate": 1.0}, "rank_dropout_rate=1.0 must be in"),
        ({"target_patterns": "query"}, "non-empty list"),
        ({"target_patterns": ["(query"]}, "is not a regex"),
    ],
)
def test_bad_configs_are_named(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    lora.LoraConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"target_patterns": [r"attention/querry/kernel$"]}, "matches no parameter path"),
        ({"target_patterns": [r"norm/scale$"]}, "LoRA adapts matrices"),
        ({"rank": 17, "target_patterns": [r"attention/key/kernel$"]}, "rank=17 exceeds"),
    ],
)
def test_targets_that_cannot_take_adapters_are_named(kwargs, message):
  _, adapted, _ = _models(**kwargs)
  with pytest.raises(ConfigError, match=message):
    adapted.init(jax.random.PRNGKey(0), _batch())


def test_weighted_merging_adds_each_adapters_weighted_product():
  rng = np.random.default_rng(0)
  base = {"p": {"kernel": rng.normal(size=(2, 4, 6)).astype(np.float32)}}  # [layers, in, out]
  first = {"p": {"lora_a": rng.normal(size=(2, 4, 2)), "lora_b": rng.normal(size=(2, 2, 6))}}
  second = {"p": {"lora_a": rng.normal(size=(2, 4, 3)), "lora_b": rng.normal(size=(2, 3, 6))}}
  first, second = (jax.tree.map(lambda x: x.astype(np.float32), t) for t in (first, second))
  merged = lora.merge_weighted(base, [(first, 0.5), (second, -2.0)])["p"]["kernel"]
  want = np.asarray(base["p"]["kernel"], np.float64)
  for adapter, weight in ((first, 0.5), (second, -2.0)):
    a, b = (np.asarray(adapter["p"][k], np.float64) for k in ("lora_a", "lora_b"))
    want = want + weight * np.stack([a[i] @ b[i] for i in range(2)])
  np.testing.assert_allclose(merged, want, rtol=1e-5, atol=1e-5)
  one = lora.merge(lora.join_adapters(base, first), 0.5)["p"]["kernel"]
  np.testing.assert_allclose(lora.merge_weighted(base, [(first, 0.5)])["p"]["kernel"], one)
  with pytest.raises(ConfigError, match="does not fit the kernel"):
    lora.merge_weighted(
        base, [({"p": {"lora_a": np.ones((2, 5, 2)), "lora_b": np.ones((2, 2, 6))}}, 1.0)]
    )
  with pytest.raises(ConfigError, match="does not fit the kernel"):  # A of rank 2, B of rank 3
    lora.merge_weighted(
        base, [({"p": {"lora_a": first["p"]["lora_a"], "lora_b": second["p"]["lora_b"]}}, 1.0)]
    )
  with pytest.raises(ConfigError, match="no kernel in the base model"):
    lora.merge_weighted(base, [({"q": first["p"]}, 1.0)])


@pytest.mark.slow
def test_an_encoder_decoder_decodes_through_its_adapters():
  """Encoding (method="encode") and cached decoding go through the adapted kernels too."""
  base = models.EncoderDecoderModel(dense.EncoderDecoder(tiny_config()))
  config = lora.LoraConfig(rank=2, alpha=2.0, target_patterns=ALL_DENSE)
  adapted = lora_models.lora_model(base, config)
  tokens = jnp.asarray(np.random.default_rng(0).integers(2, 64, size=(2, 6)), jnp.int32)
  batch = {
      "encoder_input_tokens": tokens,
      "decoder_input_tokens": tokens,
      "decoder_target_tokens": tokens,
  }
  params = meta.unbox(adapted.init(jax.random.PRNGKey(0), batch))
  base_params, _ = lora.split_adapters(params)
  prompts = base.prompt_batch([[5, 6, 7], [8, 9]], 2, 6)
  same = adapted.predict_batch(params, prompts, jax.random.PRNGKey(1))[0]
  np.testing.assert_array_equal(
      same, base.predict_batch(base_params, prompts, jax.random.PRNGKey(1))[0]
  )
  live = _random_b(params, seed=3)
  merged = lora.merge(live, config.scale)
  np.testing.assert_array_equal(
      adapted.predict_batch(live, prompts, jax.random.PRNGKey(1))[0],
      base.predict_batch(merged, prompts, jax.random.PRNGKey(1))[0],
  )
  np.testing.assert_allclose(
      adapted.score_batch(live, batch), base.score_batch(merged, batch), rtol=1e-5
  )
  assert not np.allclose(adapted.score_batch(live, batch), base.score_batch(base_params, batch))
