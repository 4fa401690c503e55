"""The Model API the trainers and decoders talk to (as T5X's models.py).

A Model wraps a Flax module and knows its loss, how to score a batch and how to predict.
A Model owns its batch layout: `FEATURE_CONVERTER_CLS` (model_zoo.feature_converters)
names the SeqIO feature converter that builds its batches, and builds the prompt and
scoring batches of decoding and inference.

Layers sow auxiliary loss terms and metrics (model_zoo/aux_outputs.py): `loss_fn` adds the
loss terms to the loss and reports both as metrics. Randomness comes in named rng streams
(`rng_streams`, default ("dropout",)): a training `loss_fn` derives one key per stream from
its rng (the Trainer's, folded with the step, so a resumed run draws the same), and eval,
scoring and decoding pass no rngs at all, so a layer may draw only when not deterministic.
"""

import functools
import zlib
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from model_zoo import aux_outputs, feature_converters, losses
from model_zoo.decoding import base as decoding
from model_zoo.decoding import sampling
from model_zoo.errors import ConfigError
from model_zoo.metrics import Average

Batch = Mapping[str, jax.Array]
Params = Any


class BaseModel:
  """Loss, scoring and prediction for a token-prediction Flax module."""

  FEATURE_CONVERTER_CLS: type[feature_converters.FeatureConverter]

  def __init__(
      self,
      module: nn.Module,
      *,
      z_loss: float = 1e-4,
      label_smoothing: float = 0.0,
      eos_id: int = 1,
      rng_streams: Sequence[str] = ("dropout",),
  ):
    """`rng_streams`: the rng streams a training forward pass gets (beside "params", which
    only init uses); a layer that draws from another stream (e.g. "router") needs it here."""
    self.module = module
    self.z_loss = z_loss
    self.label_smoothing = label_smoothing
    self.eos_id = eos_id
    self.rng_streams = tuple(rng_streams)
    if "params" in self.rng_streams or len(set(self.rng_streams)) != len(self.rng_streams):
      raise ConfigError(
          f"{type(self).__name__}.rng_streams={self.rng_streams!r} must name distinct streams "
          "other than 'params' (init's)."
      )
    if getattr(module.config, "dropout_rate", 0.0) > 0 and "dropout" not in self.rng_streams:
      raise ConfigError(
          f"TransformerConfig.dropout_rate={module.config.dropout_rate} needs 'dropout' in "
          f"{type(self).__name__}.rng_streams={self.rng_streams!r}."
      )

  @property
  def vocab_size(self) -> int:
    return self.module.config.vocab_size

  def _apply(self, variables, batch: Batch, *, rngs=None, deterministic=True, mutable=False):
    return self.module.apply(
        variables,
        **self._module_inputs(batch),
        deterministic=deterministic,
        rngs=rngs,
        mutable=mutable,
    )

  # --- the API ---------------------------------------------------------------------------
  def init(self, rng: jax.Array, batch: Batch) -> Params:
    """Parameters (boxed with their logical axis names) for batches shaped like `batch`."""
    rngs = {"params": rng, **self.stream_rngs(rng)}
    return self.module.init(rngs, **self._module_inputs(batch))["params"]

  def stream_rngs(self, rng: jax.Array) -> dict[str, jax.Array]:
    """One key per rng stream, `rng` folded with a hash of the stream's name: adding or
    reordering streams leaves the other streams' draws as they were."""
    return {name: jax.random.fold_in(rng, zlib.crc32(name.encode())) for name in self.rng_streams}

  def _module_inputs(self, batch: Batch) -> dict:
    converter = self.FEATURE_CONVERTER_CLS
    missing = [k for k in converter.required_features if k not in batch]
    if missing:
      raise ValueError(
          f"{type(self).__name__} needs batch features {missing}; got {sorted(batch)}. "
          f"Use SeqIO's {converter.__name__} (feature converter {converter.name!r}) for this model."
      )
    return {k: batch[k] for k in converter.model_features if k in batch}

  # --- batch layout -----------------------------------------------------------------------
  def loss_normalizer(self, batch: Batch) -> jax.Array:
    """The loss-weight sum that a batch's mean token loss divides by."""
    return jnp.sum(feature_converters.loss_weights(batch))

  def num_target_tokens(self, batch: Batch) -> jax.Array:
    """Target tokens that carry loss in `batch` (for tokens/s)."""
    return self.loss_normalizer(batch)

  def prompt_batch(
      self,
      prompts: Sequence[feature_converters.Prompt],
      rows: int,
      length: int,
      prompt_length: Optional[int] = None,
  ) -> dict:
    """A batch of `rows` whose first len(prompts) rows continue `prompts` (token ids, or an
    ASR model's frames, `prompt_length` of them per row)."""
    return self.FEATURE_CONVERTER_CLS.prompt_batch(prompts, rows, length, prompt_length)

  def scoring_batch(
      self,
      prompts: Sequence[feature_converters.Prompt],
      targets: Sequence[Sequence[int]],
      rows: int,
      length: int,
      prompt_length: Optional[int] = None,
  ) -> dict:
    """A batch whose score_batch is log p(target | prompt) for each (prompt, target)."""
    return self.FEATURE_CONVERTER_CLS.scoring_batch(prompts, targets, rows, length, prompt_length)

  def _logits(self, params, batch, rng=None):
    """Logits and what the layers sowed (aux losses, aux metrics); no rngs without `rng`."""
    rngs = None if rng is None else self.stream_rngs(rng)
    logits, state = self._apply(
        {"params": params},
        batch,
        rngs=rngs,
        deterministic=rng is None,
        mutable=list(aux_outputs.COLLECTIONS),
    )
    return logits, state

  def loss_fn(
      self,
      params: Params,
      batch: Batch,
      rng: Optional[jax.Array] = None,
      normalizer: Optional[jax.Array] = None,
  ) -> tuple[jax.Array, dict[str, Average]]:
    """Weighted mean token loss (+ sown auxiliary losses) and metrics.

    `normalizer` (default: this batch's loss-weight sum) lets gradient accumulation divide
    every microbatch by the whole batch's weight, so k microbatches equal one big batch.
    Sown loss terms (`aux/<path>`) and metrics (`metrics/<path>`) count with the batch's
    loss-weight sum, as the token loss does: merged over microbatches and steps, `aux/...`
    is the term the loss got and `metrics/...` one big batch's value.
    """
    logits, sown = self._logits(params, batch, rng)
    weights = feature_converters.loss_weights(batch)
    per_token, reported_terms = self._token_terms(params, batch, logits)
    weight_sum = jnp.sum(weights)
    normalizer = weight_sum if normalizer is None else normalizer
    loss_sum = jnp.sum(per_token * weights)
    loss = loss_sum / normalizer
    metrics = {"loss": Average.of(loss_sum, weight_sum)}
    for name, term in reported_terms.items():
      metrics[name] = Average.of(jnp.sum(term * weights), weight_sum)
    for path, term in aux_outputs.loss_terms(sown.get(aux_outputs.AUX_LOSS, {})).items():
      loss = loss + term * (weight_sum / normalizer)
      metrics[f"aux/{path}"] = Average.of(term * weight_sum, weight_sum)
    for name, (per_token, weight) in self._token_regularisers(params, batch, logits).items():
      term_sum = jnp.sum(per_token * weights)
      loss = loss + weight * term_sum / normalizer
      metrics[name] = Average.of(term_sum, weight_sum)
    reported = {
        **aux_outputs.metric_values(sown.get(aux_outputs.AUX_METRICS, {})),
        **aux_outputs.metric_items(sown.get(aux_outputs.AUX_METRIC_ITEMS, {})),
    }
    for path, value in reported.items():
      metrics[f"metrics/{path}"] = Average.of(value * weight_sum, weight_sum)
    return loss, metrics

  def _token_terms(
      self, params: Params, batch: Batch, logits: jax.Array
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The per-token loss [batch, length] and the per-token terms reported beside it, by
    metric name (each reported as its loss-weighted mean): here the cross entropy with
    z-loss and label smoothing."""
    del params
    terms = losses.token_losses(
        logits,
        batch["decoder_target_tokens"],
        z_loss=self.z_loss,
        label_smoothing=self.label_smoothing,
    )
    return terms.loss, {
        "cross_entropy": -terms.log_prob,
        "z_loss": terms.z_loss,
        "accuracy": terms.correct,
    }

  def _token_regularisers(
      self, params: Params, batch: Batch, logits: jax.Array
  ) -> dict[str, tuple[jax.Array, float]]:
    """Per-token loss terms beside the cross entropy, by metric name: (term [batch, length],
    its weight in the loss). The metric reports the term's weighted mean, the loss adds
    weight * it. None here; a subclass adds e.g. a distillation term."""
    del params, batch, logits
    return {}

  def score_batch(self, params: Params, batch: Batch, return_per_token: bool = False):
    """Per-example log-likelihood sum_t w_t log p(target_t) (and the per-token terms)."""
    logits, _ = self._logits(params, batch)
    targets = batch["decoder_target_tokens"]
    weights = feature_converters.loss_weights(batch)
    per_token = losses.target_log_probs(logits, targets) * weights
    scores = jnp.sum(per_token, axis=-1)
    return (scores, per_token) if return_per_token else scores

  def predict_batch(
      self,
      params: Params,
      batch: Batch,
      rng: Optional[jax.Array] = None,
      decoder: Optional[Callable] = None,
      return_all_decodes: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Decoded continuations (the generated tokens only, 0 after EOS) and their log-probs,
    best first.

    `decoder` is a model_zoo.decoding decoder (default greedy). `decode_inputs` prefills each
    prompt into the cache in one pass, and the decoder then runs one step per generated
    token: a row whose prompt has P tokens generates at most length - P of them. A decoder
    with models of its own (controlled decoding's prefix scorers) prefills them from the same
    rows in its `prepare_inputs(inputs, batch)`. Shapes: [batch, length] and [batch], or
    [batch, decodes, length] and [batch, decodes] with `return_all_decodes`.
    """
    decoder = decoder or sampling.greedy()
    per_example = decoder.rows_per_example
    expanded = jax.tree.map(lambda x: jnp.repeat(x, per_example, axis=0), dict(batch))
    inputs = self.decode_inputs(params, expanded)
    if hasattr(decoder, "prepare_inputs"):
      inputs = decoder.prepare_inputs(inputs, expanded)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    sequences, scores = decoder(inputs, rng=rng, eos_id=self.eos_id)
    return (sequences, scores) if return_all_decodes else (sequences[:, 0], scores[:, 0])

  def predict_batch_with_aux(
      self,
      params: Params,
      batch: Batch,
      rng: Optional[jax.Array] = None,
      decoder: Optional[Callable] = None,
      return_all_decodes: bool = False,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """As predict_batch, with the scores in an aux dict (T5X's shape of this API)."""
    sequences, scores = self.predict_batch(params, batch, rng, decoder, return_all_decodes)
    return sequences, {"scores": scores}

  def decode_inputs(self, params: Params, batch: Batch) -> decoding.DecodeInputs:
    """What a decoder needs for `batch` (one row per decoded sequence): the step function,
    the cache with the prompt prefilled, each row's first input and room (see
    model_zoo.decoding.base)."""
    raise NotImplementedError

  def _reorder_cache(self, cache, rows: jax.Array):
    """Gathers cache rows; the batch axis follows the layer axis when layers are scanned."""
    batch_axis = 1 if self.module.config.scan_layers else 0
    return jax.tree.map(
        lambda x: jnp.take(x, rows, axis=batch_axis) if x.ndim > batch_axis else x, cache
    )


@gin.configurable
class DecoderOnlyModel(BaseModel):
  """Decoder-only LM; with feature_converter="prefix_lm" a prefix LM (bidirectional over inputs)."""

  FEATURE_CONVERTER_CLS = feature_converters.DecoderFeatureConverter

  def __init__(self, module: nn.Module, *, feature_converter: str = "decoder", **kwargs):
    super().__init__(module, **kwargs)
    allowed = {"decoder", "prefix_lm"}
    if feature_converter not in allowed:
      raise ConfigError(
          f"DecoderOnlyModel.feature_converter={feature_converter!r}; expected one of "
          f"{sorted(allowed)} ('prefix_lm' attends both ways over the inputs)."
      )
    self.FEATURE_CONVERTER_CLS = feature_converters.BY_NAME[feature_converter]

  @property
  def is_prefix_lm(self) -> bool:
    """Only a prefix LM attends both ways over its inputs; a causal LM ignores the marker."""
    return issubclass(self.FEATURE_CONVERTER_CLS, feature_converters.PrefixLMFeatureConverter)

  def decode_inputs(self, params, batch):
    """The prompt is the prefix-LM input part: decoder_input_tokens where causal attention is 1
    (BOS and the prompt tokens).

    BOS + prompt are prefilled into the cache in one pass (with bidirectional attention over
    them when the model is a prefix LM), so decoding sees exactly what training saw. The
    cache then holds each row's next position: the first step feeds the row's last prefilled
    input (its last prompt token, or BOS) at its own position, which is already cached, so
    only its query runs; each later step feeds the previous token at the next position.
    """
    inputs = batch["decoder_input_tokens"]
    length = inputs.shape[1]
    prefix = batch.get("decoder_causal_attention", jnp.zeros_like(inputs))
    prefill_length = jnp.sum(prefix, axis=-1).astype(jnp.int32)  # BOS + prompt
    apply = functools.partial(
        self.module.apply, decode=True, max_decode_length=length, mutable=["cache"]
    )
    causal = prefix if self.is_prefix_lm else None
    _, cache = prefill_cache(
        lambda v, x, pos: apply(v, x, x, decoder_positions=pos, decoder_causal_attention=causal),
        params,
        inputs,
        prefill_length,
    )

    def tokens_to_logits(token, cache):
      run = lambda v, x, pos: apply(v, x, x, decoder_positions=pos)
      logits, cache = cached_step(run, params, token, cache, length)
      return logits[:, -1], cache

    def reorder_cache(cache, index):
      return {
          "model": self._reorder_cache(cache["model"], index),
          "position": jnp.take(cache["position"], index, axis=0),
      }

    return decoding.DecodeInputs(
        tokens_to_logits=tokens_to_logits,
        cache=cache,
        first_token=first_prompt_input(inputs, cache),
        max_new_tokens=length - cache["position"],
        length=length,
        reorder_cache=reorder_cache,
    )


# run(variables, inputs [N, L or 1, ...], positions [N, L or 1]) -> (outputs, mutated
# collections): a module applied in decode mode with its "cache" collection mutable.
CachedRun = Callable[[dict, jax.Array, jax.Array], tuple[jax.Array, dict]]


def prefill_cache(
    run: CachedRun, params: Params, x: jax.Array, prefill_length: jax.Array
) -> tuple[jax.Array, dict]:
  """Runs whole rows `x` [N, L, ...] into an empty cache in one pass -> (outputs, cache).

  The cache marks each row's first `prefill_length` positions (BOS + prompt) as cached, and
  its "position" is the row's last prefilled input (input t + 1 is target t: BOS is no
  token): the first step feeds that input again at its own position, so only its query runs.
  """
  rows, length = x.shape[:2]
  positions = jnp.broadcast_to(jnp.arange(length), (rows, length))
  # The empty cache (zeros, every cache_index 0), shaped without running its forward pass.
  shapes = jax.eval_shape(lambda: run({"params": params}, x, positions)[1]["cache"])
  empty = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  out, state = run({"params": params, "cache": empty}, x, positions)
  cache = _set_cache_index(state["cache"], prefill_length)
  return out, {"model": cache, "position": jnp.maximum(prefill_length - 1, 0)}


def cached_step(
    run: CachedRun, params: Params, x: jax.Array, cache: dict, length: int
) -> tuple[jax.Array, dict]:
  """One input per row [N, 1, ...] at the cache's position -> (outputs [N, 1, ...], the cache
  a position on). Rows that are done may run past the end; they stay at the last position."""
  position = jnp.minimum(cache["position"], length - 1)
  out, state = run({"params": params, "cache": cache["model"]}, x, position[:, None])
  return out, {"model": state["cache"], "position": cache["position"] + 1}


def first_prompt_input(input_tokens: jax.Array, cache: dict) -> jax.Array:
  """[N]: each row's first decoding input, its input at the prefilled cache's position."""
  return jnp.take_along_axis(input_tokens, cache["position"][:, None], axis=1)[:, 0]


def _set_cache_index(cache, index: jax.Array):
  """Marks positions below `index` [rows] as cached (the prefilled prompt) in every layer."""

  def reset(path, leaf):
    if getattr(path[-1], "key", None) == "cache_index":
      return jnp.broadcast_to(index, leaf.shape).astype(leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(reset, cache)


@gin.configurable
class EncoderDecoderModel(BaseModel):
  """Encoder-decoder; predicts targets from `encoder_input_tokens`."""

  FEATURE_CONVERTER_CLS = feature_converters.EncDecFeatureConverter

  def decode_inputs(self, params, batch):
    """No prompt in the decoder: every row starts from BOS (0) at position 0 and may fill the
    whole decode length; the step attends to the encoder's output (`_encode`)."""
    encoded, encoder_tokens = self._encode(params, batch)
    targets = batch["decoder_target_tokens"]
    rows, length = targets.shape

    def decode(cache, tokens):
      return self.module.apply(
          {"params": params, "cache": cache} if cache is not None else {"params": params},
          encoded,
          encoder_tokens,
          tokens,
          tokens,
          decode=True,
          max_decode_length=length,
          mutable=["cache"],
          method="decode",
      )

    def tokens_to_logits(token, cache):  # each row continues at its cache_index
      logits, state = decode(cache, token)
      return logits[:, -1], state["cache"]

    # The empty cache (zeros, every cache_index 0), shaped without running its forward pass.
    shapes = jax.eval_shape(lambda: decode(None, targets)[1]["cache"])
    return decoding.DecodeInputs(
        tokens_to_logits=tokens_to_logits,
        cache=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
        first_token=jnp.zeros((rows,), jnp.int32),
        max_new_tokens=jnp.full((rows,), length, jnp.int32),
        length=length,
        reorder_cache=self._reorder_cache,
    )

  def _encode(self, params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(the encoder's output, what cross-attention masks by: > 0 where it may attend)."""
    tokens = batch["encoder_input_tokens"]
    return self.module.apply({"params": params}, tokens, method="encode"), tokens
