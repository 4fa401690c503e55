"""Dense transformers: a PaLM-2/LLaMA-style decoder-only LM and a T5.1.1-style encoder-decoder.

Pre-RMSNorm residual blocks, RoPE, gated MLPs, MQA/GQA, no biases. Layers are stacked with
`nn.scan` (one compiled layer, a leading "layers" parameter axis) or unrolled, and wrapped
in `nn.remat` with a named policy. Scanned layers stack what they sow (model_zoo/aux_outputs.py)
on that axis and get their own key from every rng stream, as unrolled layers do.
"""

from typing import Optional, Sequence

import flax.linen as nn
import gin
import jax.numpy as jnp

from model_zoo import aux_outputs, brainformer, layer_spec, sublayers
from model_zoo.config import REMAT_POLICIES, TransformerConfig
from model_zoo.errors import ConfigError
from model_zoo.layers import attention, embeddings, linear, masks, norms, relative_position, types
from model_zoo.moe import layer as moe_layer


class TransformerLayer(sublayers.TransformerSublayers):
  """Self-attention (+ cross-attention when `encoded` is given) and an MLP, pre-norm residual."""

  moe: bool = False  # the FFN is a MoeBlock (config.moe) instead of the dense MLP

  @nn.compact
  def __call__(self, x, mask, positions, encoded=None, cross_mask=None, bias=None, segments=None):
    cfg = self.config
    x = sublayers.constrain(x)
    h = self._norm("pre_self_attention_norm")(x)
    x = x + self._dropout(
        self._self_attention("self_attention", h, mask, positions, bias, segments)
    )
    if encoded is not None:
      h = self._norm("pre_cross_attention_norm")(x)
      cross = self._attention("cross_attention", use_rope=False)
      x = x + self._dropout(cross(h, encoded, cross_mask, deterministic=self.deterministic))
    h = self._norm("pre_mlp_norm")(x)
    ffn = self._moe(cfg.moe) if self.moe else self._mlp(cfg.mlp_dim)
    h = ffn(h, deterministic=self.deterministic)
    x = sublayers.constrain(x + self._dropout(h))
    return x, None  # (carry, per-layer output) as nn.scan expects


class MoeLayerBlock(sublayers.TransformerSublayers):
  """MoeConfig.moe_layer_interval TransformerLayers, the last with a MoE FFN: the unit that a
  MoE model scans, so that it keeps one compiled block (GLaM: [dense, moe])."""

  @nn.compact
  def __call__(self, x, *args):
    interval = self.config.moe.moe_layer_interval
    for i in range(interval):
      x, _ = TransformerLayer(
          self.config,
          self.causal_cache,
          self.deterministic,
          moe=i == interval - 1,
          name=f"layer_{i}",
      )(x, *args)
    return x, None


class LayerStack(nn.Module):
  """`num_layers` TransformerLayers, scanned or unrolled, with the configured remat policy.
  With a MoeConfig the unit is a MoeLayerBlock of moe_layer_interval layers; with a
  TransformerConfig.block it is that block (brainformer.SpecBlock), num_layers times."""

  config: TransformerConfig
  num_layers: int
  bidirectional: bool = False  # relative position buckets for both directions (encoders)

  def _relative_bias(self, length: int):
    cfg = self.config
    return relative_position.RelativePositionBiases(
        cfg.num_heads,
        cfg.relpos_num_buckets,
        cfg.relpos_max_distance,
        dtype=jnp.float32,
        param_dtype=cfg.parameter_dtype,
        name="relpos_bias",
    )(length, length, bidirectional=self.bidirectional)

  @nn.compact
  def __call__(
      self,
      x,
      mask,
      positions,
      encoded=None,
      cross_mask=None,
      *,
      decode: bool = False,
      deterministic: bool = True,
      max_decode_length: Optional[int] = None,
      segments: Optional[attention.Segments] = None,
  ):
    """`max_decode_length` (the cache length) is needed when decoding with relative biases;
    `segments` replaces the self-attention `mask` for the fused kernels."""
    cfg = self.config
    bias = None
    if cfg.position_encoding == "relative_bias":
      if decode and max_decode_length is None:
        raise ValueError("Decoding with relative position biases needs max_decode_length.")
      bias = self._relative_bias(max_decode_length if decode else x.shape[1])
    layer_cls, num_blocks = TransformerLayer, self.num_layers
    if cfg.block is not None:
      layer_cls = brainformer.SpecBlock
    elif cfg.moe is not None:
      if self.num_layers % cfg.moe.moe_layer_interval:
        raise ConfigError(
            f"{self.num_layers} layers are not a multiple of MoeConfig.moe_layer_interval="
            f"{cfg.moe.moe_layer_interval} (the stack is made of blocks of that many, the last "
            "one MoE); change TransformerConfig.num_layers (or num_encoder_layers) or the interval."
        )
      layer_cls, num_blocks = MoeLayerBlock, self.num_layers // cfg.moe.moe_layer_interval
    policy = REMAT_POLICIES[cfg.remat_policy]
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers)
    kwargs = dict(config=cfg, causal_cache=decode, deterministic=deterministic)
    if cfg.scan_layers:
      scanned = nn.scan(
          layer_cls,
          variable_axes={
              "params": 0,
              "cache": 0,
              **{collection: 0 for collection in aux_outputs.COLLECTIONS},
              "intermediates": 0,
          },
          split_rngs={True: True},  # every stream: dropout and the Model's rng_streams
          in_axes=nn.broadcast,
          length=num_blocks,
          metadata_params={nn.PARTITION_NAME: "layers"},
      )
      args = (x, mask, positions, encoded, cross_mask, bias, segments)
      x, _ = scanned(**kwargs, name="layers")(*args)
      return x
    for i in range(num_blocks):
      args = (x, mask, positions, encoded, cross_mask, bias, segments)
      x, _ = layer_cls(**kwargs, name=f"layers_{i}")(*args)
    return x


def activated_fraction(cfg: TransformerConfig, keys: Sequence[str]) -> float:
  """The share of a parameter (named by its path keys) that one token's forward pass uses:
  a MoE layer's expert kernels count at its MoeConfig.activated_expert_fraction, everything
  else (routers too) in full. Parameter counts at equal activated size use it."""
  if moe_layer.MODULE_NAME not in keys or "router" in keys:
    return 1.0
  if cfg.block is None:
    return cfg.moe.activated_expert_fraction
  sublayer = next(k for k in keys if k.startswith(brainformer.SUBLAYER_PREFIX))
  index = int(sublayer[len(brainformer.SUBLAYER_PREFIX) :])
  return layer_spec.moe_configs(cfg.block, cfg.moe)[index].activated_expert_fraction


def _embed(cfg: TransformerConfig, name: str) -> embeddings.Embed:
  return embeddings.Embed(
      cfg.vocab_size,
      cfg.emb_dim,
      dtype=cfg.activation_dtype,
      param_dtype=cfg.parameter_dtype,
      name=name,
  )


class _LogitsHead(nn.Module):
  """Final norm and vocabulary projection (tied to the embedding or separate), fp32 logits."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x, embed: embeddings.Embed):
    cfg = self.config
    x = norms.RMSNorm(
        dtype=cfg.activation_dtype, param_dtype=cfg.parameter_dtype, name="final_norm"
    )(x)
    if cfg.tie_embeddings:  # scaled before the projection: [.., embed] is vocab/embed x smaller
      logits = embed.attend(x * jnp.asarray(cfg.emb_dim**-0.5, cfg.activation_dtype))
    else:
      logits = linear.DenseGeneral(
          cfg.vocab_size,
          ("embed", "vocab"),
          dtype=cfg.activation_dtype,
          param_dtype=cfg.parameter_dtype,
          name="logits_dense",
      )(x)
    logits = nn.with_logical_constraint(
        logits, ("activation_batch", "activation_length", "activation_vocab")
    )
    return logits.astype(jnp.float32)


def decoder_self_attention(
    cfg: TransformerConfig,
    input_tokens: types.Array,
    target_tokens: types.Array,
    segment_ids: Optional[types.Array] = None,
    causal_attention: Optional[types.Array] = None,
    decode: bool = False,
) -> tuple[Optional[types.Array], Optional[attention.Segments]]:
  """A decoder's self-attention (mask, segments) for its batch: the fused kernels take
  segments, the others a mask; a cache being decoded into attends causally (no mask)."""
  if cfg.attention_impl == "pallas" and causal_attention is not None and not decode:
    raise ConfigError(
        "TransformerConfig.attention_impl='pallas' is causal only; a prefix-LM batch "
        "(decoder_causal_attention) needs attention_impl 'cudnn', 'xla' or 'einsum'."
    )
  fused = cfg.attention_impl in attention.FUSED_IMPLS and cfg.position_encoding == "rope"
  if not decode and fused and causal_attention is None:
    return None, attention.decoder_segments(target_tokens, segment_ids)
  if not decode:
    return masks.decoder_self_attention_mask(target_tokens, segment_ids, causal_attention), None
  if causal_attention is not None:  # prefilling a prefix-LM prompt into the cache
    return (
        masks.decoder_self_attention_mask(jnp.ones_like(input_tokens), None, causal_attention),
        None,
    )
  return None, None  # the cache attends causally


@gin.configurable
class DecoderOnlyLM(nn.Module):
  """Decoder-only LM over SeqIO's decoder / prefix-LM batches; returns fp32 logits."""

  config: TransformerConfig

  @nn.compact
  def __call__(
      self,
      decoder_input_tokens: types.Array,
      decoder_target_tokens: types.Array,
      decoder_segment_ids: Optional[types.Array] = None,
      decoder_positions: Optional[types.Array] = None,
      decoder_causal_attention: Optional[types.Array] = None,
      *,
      decode: bool = False,
      deterministic: bool = True,
      max_decode_length: Optional[int] = None,
  ) -> types.Array:
    cfg = self.config
    embed = _embed(cfg, "token_embedder")
    mask, segments = decoder_self_attention(
        cfg,
        decoder_input_tokens,
        decoder_target_tokens,
        decoder_segment_ids,
        decoder_causal_attention,
        decode,
    )
    x = nn.Dropout(cfg.dropout_rate)(embed(decoder_input_tokens), deterministic=deterministic)
    x = LayerStack(cfg, cfg.num_layers, name="decoder")(
        x,
        mask,
        decoder_positions,
        decode=decode,
        deterministic=deterministic,
        max_decode_length=max_decode_length,
        segments=segments,
    )
    return self.output_head(x, embed)

  def output_head(self, x: types.Array, embed: embeddings.Embed) -> types.Array:
    """The final hidden states [.., emb] -> fp32 outputs per vocabulary entry (here logits;
    a prefix scorer's values)."""
    return _LogitsHead(self.config, name="head")(x, embed)


@gin.configurable
class EncoderDecoder(nn.Module):
  """T5.1.1-style encoder-decoder with a shared input embedding."""

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    if cfg.attention_impl == "pallas":
      raise ConfigError(
          "TransformerConfig.attention_impl='pallas' is causal self-attention only (decoder-only "
          "models); an encoder-decoder needs attention_impl 'cudnn', 'xla' or 'einsum'."
      )
    if cfg.block is not None:
      raise ConfigError(
          "TransformerConfig.block (a block of sub-layers) builds decoder-only models; an "
          "encoder-decoder needs TransformerConfig.block = None."
      )
    self.token_embedder = _embed(cfg, "token_embedder")
    self.encoder = LayerStack(cfg, cfg.num_encoder_layers, bidirectional=True, name="encoder")
    self.decoder = LayerStack(cfg, cfg.num_layers, name="decoder")
    self.encoder_norm = norms.RMSNorm(dtype=cfg.activation_dtype, param_dtype=cfg.parameter_dtype)
    self.head = _LogitsHead(cfg)

  def encode(
      self,
      encoder_input_tokens,
      encoder_segment_ids=None,
      encoder_positions=None,
      deterministic: bool = True,
  ):
    mask = masks.bidirectional_mask(
        encoder_input_tokens, encoder_input_tokens, encoder_segment_ids, encoder_segment_ids
    )
    x = self.token_embedder(encoder_input_tokens)
    x = self.encoder(x, mask, encoder_positions, deterministic=deterministic)
    return self.encoder_norm(x)

  def decode(
      self,
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids=None,
      decoder_segment_ids=None,
      decoder_positions=None,
      *,
      decode: bool = False,
      deterministic: bool = True,
      max_decode_length: Optional[int] = None,
  ):
    if decode:
      self_mask = None
      cross_mask = masks.bidirectional_mask(
          jnp.ones_like(decoder_input_tokens), encoder_input_tokens
      )
    else:
      self_mask = masks.decoder_self_attention_mask(decoder_target_tokens, decoder_segment_ids)
      cross_mask = masks.bidirectional_mask(
          decoder_target_tokens, encoder_input_tokens, decoder_segment_ids, encoder_segment_ids
      )
    x = self.token_embedder(decoder_input_tokens)
    x = self.decoder(
        x,
        self_mask,
        decoder_positions,
        encoded,
        cross_mask,
        decode=decode,
        deterministic=deterministic,
        max_decode_length=max_decode_length,
    )
    return self.head(x, self.token_embedder)

  def __call__(
      self,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids=None,
      decoder_segment_ids=None,
      encoder_positions=None,
      decoder_positions=None,
      *,
      decode: bool = False,
      deterministic: bool = True,
  ):
    encoded = self.encode(
        encoder_input_tokens, encoder_segment_ids, encoder_positions, deterministic
    )
    return self.decode(
        encoded,
        encoder_input_tokens,
        decoder_input_tokens,
        decoder_target_tokens,
        encoder_segment_ids,
        decoder_segment_ids,
        decoder_positions,
        decode=decode,
        deterministic=deterministic,
    )
