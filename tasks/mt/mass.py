"""MASS (Song et al., 2019) as a SeqIO preprocessor: hide one contiguous span, predict it.

An encoder-decoder pre-trained this way on each language's monolingual text learns to read
and to write that language; the `<2xx>` tag in front tells it which language to write, as in
the translation tasks, so both can be mixed. Spans come from SeqIO's per-example stateless
seeds (`map_over_dataset(num_seeds=1)`), so a fixed seed gives the same examples every time.
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError


def span_length(num_tokens):
  """Tokens MASS hides out of `num_tokens` (an int or a tensor): half, rounded up, so >= 1.

  The paper's 50%; rounding up (not half-to-even) makes the rule one integer expression.
  """
  return (num_tokens + 1) // 2


def _max_source_tokens(
    sequence_length: Mapping[str, int] | None, output_features: Mapping[str, seqio.Feature]
) -> int | None:
  """The longest source whose masked example fits the lengths whole (EOS included), or None.

  Inputs hold the tag and every source token; targets hold span_length(n) tokens, which is
  at most the targets budget t exactly when n <= 2 t.
  """
  if not sequence_length:
    return None
  inputs = sequence_length["inputs"] - int(output_features["inputs"].add_eos) - 1
  targets = sequence_length["targets"] - int(output_features["targets"].add_eos)
  if inputs < 1 or targets < 1:
    raise ConfigError(
        "MASS needs room for the language tag and one token in the inputs and one token "
        f"(plus EOS) in the targets; the task feature lengths {dict(sequence_length)} leave "
        f"{inputs} and {targets}. Raise TASK_FEATURE_LENGTHS."
    )
  return min(inputs, 2 * targets)


def mass(
    dataset: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None,
    output_features: Mapping[str, seqio.Feature],
    *,
    tag_id: int,
    mask_id: int,
) -> tf.data.Dataset:
  """Tokenized text in `targets` -> {"inputs": tag + masked text, "targets": the hidden span}.

  The span has span_length(n) tokens and starts uniformly at random in [0, n - span]; each
  hidden token becomes one `mask_id` in the inputs, so the inputs keep the text's length
  and positions. With `sequence_length`, the text is first cut to its first tokens, as many
  as fit once masked, so `append_eos_after_trim` never cuts an example.
  """
  max_tokens = _max_source_tokens(sequence_length, output_features)

  @seqio.map_over_dataset(num_seeds=1)
  def hide_span(example, seed):
    tokens = example["targets"][:max_tokens]
    num_tokens = tf.size(tokens)
    span = span_length(num_tokens)
    start = tf.random.stateless_uniform(
        [], seed, minval=0, maxval=num_tokens - span + 1, dtype=tf.int32
    )
    positions = tf.range(num_tokens)
    hidden = (positions >= start) & (positions < start + span)
    masked = tf.where(hidden, tf.constant(mask_id, tokens.dtype), tokens)
    return {
        "inputs": tf.concat([tf.constant([tag_id], tokens.dtype), masked], axis=0),
        "targets": tokens[start : start + span],
    }

  return hide_span(dataset)
