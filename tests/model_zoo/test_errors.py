"""A user's bad model setting fails with a `UserError` (one line from the command lines), not
a plain ValueError or TypeError, which the command lines treat as bugs (a traceback)."""

import dataclasses

import jax.numpy as jnp
import pytest

from model_zoo import dense, models
from model_zoo.errors import ConfigError, UserError
from model_zoo.layers import attention, mlp
from tests.tiny import tiny_config


@pytest.mark.parametrize(
    "overrides, setting",
    [
        ({"remat_policy": "some"}, "remat_policy"),
        ({"position_encoding": "alibi"}, "position_encoding"),
        ({"num_heads": 6, "num_kv_heads": 4}, "num_kv_heads"),
        ({"num_kv_heads": 0}, "num_kv_heads"),
        ({"head_dim": 7}, "head_dim"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"dtype": "bfloat17"}, "dtype"),
        ({"param_dtype": "fp32"}, "param_dtype"),
        ({"attention_impl": "flash"}, "attention_impl"),
    ],
)
def test_bad_transformer_config_is_a_user_error(overrides, setting):
  with pytest.raises(UserError, match=f"TransformerConfig.{setting}") as e:
    tiny_config(**overrides)
  assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)


def test_good_transformer_config_passes():
  cfg = tiny_config(attention_impl="xla", dtype="bfloat16", param_dtype="float32")
  assert dataclasses.replace(cfg, remat_policy="full").remat_policy == "full"


def test_unknown_activation_and_attention_implementation_are_user_errors():
  with pytest.raises(UserError, match="activations"):
    mlp.activation("sigmoidish")
  q = jnp.zeros((1, 2, 2, 4))
  with pytest.raises(UserError, match="attention_impl"):
    attention.dot_product_attention(q, q, q, implementation="flash9")


def test_a_decoder_only_model_with_an_encdec_layout_is_a_user_error():
  with pytest.raises(ConfigError, match="DecoderOnlyModel.feature_converter='encdec'"):
    models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config()), feature_converter="encdec")
