"""gin/models/fused_lm_*.gin describe, under the lm/ scope and beside an ASR model's bindings,
the same LM that its unscoped model files train: the parameters restore into it."""

import gin
import jax
import jax.numpy as jnp
import pytest
from flax.core import meta

from tools import benchmark_common
from trainers import shallow_fusion  # noqa: F401  (registers restored_fused_lm)

CONFIGURABLE = benchmark_common.model_configurable("fused_lm_config_test")
TRAINED = {
    "dense": (["gin/models/decoder_only_tiny.gin", "gin/mixtures/asr_lm.gin"], []),
    "glam": (
        ["gin/models/glam_tiny.gin", "gin/mixtures/asr_lm.gin"],
        ["TransformerConfig.mlp_dim = 256", "MoeConfig.num_experts = 8"],
    ),
}


def _shapes(gin_files, bindings):
  gin.clear_config()
  try:
    model = benchmark_common.load_model(
        gin_files, "", bindings, CONFIGURABLE, "fused_lm_config_test"
    )
  finally:
    gin.clear_config()
  batch = {k: jnp.ones((1, 8), jnp.int32) for k in model.FEATURE_CONVERTER_CLS.required_features}
  params = meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), batch))
  return model, jax.tree.map(lambda x: x.shape, params)


@pytest.mark.parametrize("name", ["dense", "glam"])
def test_the_scoped_lm_has_the_trained_lms_parameters(name):
  trained, trained_shapes = _shapes(*TRAINED[name])
  scoped, scoped_shapes = _shapes(
      ["gin/models/asr_tiny.gin", f"gin/models/fused_lm_{name}_tiny.gin"],
      ["MODEL = @lm/DecoderOnlyModel()"],
  )
  assert scoped_shapes == trained_shapes
  assert scoped.rng_streams == trained.rng_streams
  assert scoped.module.config == trained.module.config
