"""UL2's denoisers as SeqIO preprocessors: span corruption (R and X) and prefix LM (S).

Each turns the tokenized source text in `targets` into `inputs` (the mode token first) and
`targets`, so one task feeds an encoder-decoder (`encdec` converter) or a decoder-only
prefix LM (`prefix_lm`). Randomness comes from SeqIO's per-example stateless seeds
(`map_over_dataset(num_seeds=...)`), so a fixed seed gives the same examples every time.

Lengths: when SeqIO passes `sequence_length`, the source is cut to its first tokens, as many
as fit once corrupted (less the EOS a feature appends), so `append_eos_after_trim` never
cuts an example and `targets` always holds exactly what `inputs` lacks. Span corruption
also keeps no more spans than the vocabulary has sentinels. Sources under 2 tokens are
dropped: a denoiser must keep at least one token and hide at least one.
"""

from typing import Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError

_NO_LIMIT = 1 << 29  # a token budget that never binds (no sequence_length given)


def span_counts(length, noise_density: float, mean_span: float) -> tuple[tf.Tensor, tf.Tensor]:
  """(noise tokens, noise spans) for `length` source tokens (a scalar or a vector), as T5.

  round(length * noise_density) noise tokens, at least one and leaving at least one kept,
  in round(noise / mean_span) spans: at least one, and no more than there are noise tokens,
  or kept tokens + 1 (spans must be apart, but one may start or end the source).
  """
  length = tf.convert_to_tensor(length, tf.int32)
  noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
  noise = tf.minimum(tf.maximum(noise, 1), length - 1)
  spans = tf.cast(tf.round(tf.cast(noise, tf.float32) / mean_span), tf.int32)
  spans = tf.minimum(tf.maximum(spans, 1), tf.minimum(noise, length - noise + 1))
  return noise, spans


def max_source_length(
    noise_density: float,
    mean_span: float,
    num_sentinels: int,
    inputs_budget: int = _NO_LIMIT,
    targets_budget: int = _NO_LIMIT,
) -> int:
  """The longest source whose corrupted inputs and targets fit the budgets, sentinels enough.

  Corrupting L tokens gives inputs of 1 + L - noise + spans tokens (mode token, kept tokens,
  one sentinel a span) and targets of noise + spans; both grow with L, as do the spans,
  so the lengths that fit are 2..max and a scan over candidates finds max.
  """
  if not (0 < noise_density < 1 and mean_span >= 1 and num_sentinels >= 1):
    raise ConfigError(
        "span corruption needs 0 < noise_density < 1, mean_span >= 1 and at least one "
        f"sentinel; got noise_density={noise_density}, mean_span={mean_span}, "
        f"num_sentinels={num_sentinels} (the vocabulary's extra_ids)"
    )
  # Past this length there are more than num_sentinels spans.
  upper = int((num_sentinels + 1) * mean_span / noise_density) + 3
  lengths = tf.range(2, upper)
  noise, spans = span_counts(lengths, noise_density, mean_span)
  fits = (
      (spans <= num_sentinels)
      & (1 + lengths - noise + spans <= inputs_budget)
      & (noise + spans <= targets_budget)
  )
  if not fits[0]:
    raise ConfigError(
        f"span corruption cannot fit even 2 source tokens into {inputs_budget} inputs and "
        f"{targets_budget} targets tokens (the task feature lengths less EOS); raise them"
    )
  return int(tf.reduce_max(tf.boolean_mask(lengths, fits)))


def noise_mask(length, noise_density: float, mean_span: float, seeds: Sequence[tf.Tensor]):
  """Which of `length` tokens to hide: span_counts' noise in spans of random lengths.

  The span lengths are a uniformly random composition of the noise tokens, and the kept
  runs between them one of the kept tokens, where the runs before the first span and after
  the last may be empty: unlike T5's mask, which always starts with a kept token, any token
  may be hidden. `seeds`: two stateless seeds.
  """
  noise, spans = span_counts(length, noise_density, mean_span)
  # Kept runs: a composition of kept + 2 tokens into spans + 1 parts, less one at each end.
  kept = _random_composition(length - noise + 2, spans + 1, seeds[0])
  kept = tf.concat([kept[:1] - 1, kept[1:-1], kept[-1:] - 1], axis=0)
  hidden = _random_composition(noise, spans, seeds[1])
  runs = tf.concat([tf.reshape(tf.stack([kept[:-1], hidden], axis=1), [-1]), kept[-1:]], axis=0)
  is_noise = tf.concat([tf.tile([False, True], [spans]), [False]], axis=0)
  return tf.repeat(is_noise, runs)


def _random_composition(total, parts, seed) -> tf.Tensor:
  """`parts` positive ints summing to `total`, uniformly among all such sequences."""
  cuts = tf.sort(seqio.utils.stateless_shuffle(tf.range(1, total), seed)[: parts - 1])
  bounds = tf.concat([[0], cuts, [total]], axis=0)
  return bounds[1:] - bounds[:-1]


def _interleave(first, second, keep_first, keep_second) -> tf.Tensor:
  """At each position, first[i] (if kept) then second[i] (if kept), as one vector."""
  values = tf.reshape(tf.stack([first, second], axis=1), [-1])
  keep = tf.reshape(tf.stack([keep_first, keep_second], axis=1), [-1])
  return tf.boolean_mask(values, keep)


def _budget(
    sequence_length: Mapping[str, int] | None,
    output_features: Mapping[str, seqio.Feature],
    key: str,
) -> int:
  """Tokens a denoiser may put in feature `key`: its length less the EOS SeqIO appends."""
  length = (sequence_length or {}).get(key)
  return _NO_LIMIT if length is None else length - int(output_features[key].add_eos)


def _long_enough(example) -> tf.Tensor:
  return tf.size(example["targets"]) >= 2


def span_corruption(
    dataset: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None,
    output_features: Mapping[str, seqio.Feature],
    *,
    mode_id: int,
    noise_density: float,
    mean_span: float,
    num_sentinels: int | None = None,
) -> tf.data.Dataset:
  """R/X denoising: hides noise_density of the tokens in spans of mean length mean_span.

  inputs = mode token, then the source with each hidden span replaced by one sentinel;
  targets = each sentinel followed by the tokens it hides. As in T5 the i-th span's sentinel
  is `vocab_size - 1 - i` (`<extra_id_i>` of the targets vocabulary's extra_ids), for i below
  `num_sentinels` (default: all the extra_ids).
  """
  vocabulary = output_features["targets"].vocabulary
  if num_sentinels is not None and not 1 <= num_sentinels <= vocabulary.extra_ids:
    raise ConfigError(
        f"num_sentinels={num_sentinels}, but the vocabulary has {vocabulary.extra_ids} "
        "extra_ids to take sentinels from; give between 1 and that many"
    )
  max_length = max_source_length(
      noise_density,
      mean_span,
      vocabulary.extra_ids if num_sentinels is None else num_sentinels,
      _budget(sequence_length, output_features, "inputs"),
      _budget(sequence_length, output_features, "targets"),
  )

  @seqio.map_over_dataset(num_seeds=2)
  def corrupt(example, seeds):
    tokens = example["targets"][:max_length]
    mask = noise_mask(tf.size(tokens), noise_density, mean_span, seeds)
    starts = mask & ~tf.pad(mask[:-1], [[1, 0]])
    sentinels = vocabulary.vocab_size - tf.cumsum(tf.cast(starts, tokens.dtype))
    return {
        "inputs": tf.concat(
            [tf.constant([mode_id], tokens.dtype), _interleave(sentinels, tokens, starts, ~mask)],
            axis=0,
        ),
        "targets": _interleave(sentinels, tokens, starts, mask),
    }

  return corrupt(dataset.filter(_long_enough))


def prefix_lm(
    dataset: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None,
    output_features: Mapping[str, seqio.Feature],
    *,
    mode_id: int,
) -> tf.data.Dataset:
  """S denoising: inputs = mode token + a prefix of the source, targets = the rest.

  The split point is uniform over the points that leave at least one token on each side and
  fit the budgets: with L source tokens (at most both budgets together), prefixes of
  max(1, L - targets budget) to min(L - 1, inputs budget - 1) tokens.
  """
  max_prefix = _budget(sequence_length, output_features, "inputs") - 1
  max_suffix = _budget(sequence_length, output_features, "targets")
  if max_prefix < 1 or max_suffix < 1:
    raise ConfigError(
        "prefix LM needs room for the mode token and one token of inputs and one of targets; "
        f"the task feature lengths {dict(sequence_length)} leave {max_prefix} and {max_suffix}"
    )

  @seqio.map_over_dataset(num_seeds=1)
  def split(example, seed):
    tokens = example["targets"][: max_prefix + max_suffix]
    length = tf.size(tokens)
    cut = tf.random.stateless_uniform(
        [],
        seed,
        minval=tf.maximum(1, length - max_suffix),
        maxval=tf.minimum(length - 1, max_prefix) + 1,
        dtype=tf.int32,
    )
    return {
        "inputs": tf.concat([tf.constant([mode_id], tokens.dtype), tokens[:cut]], axis=0),
        "targets": tokens[cut:],
    }

  return split(dataset.filter(_long_enough))
