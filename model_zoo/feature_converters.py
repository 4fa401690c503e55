"""The batch layouts of SeqIO's feature converters, described without TensorFlow.

A Model names the converter whose batches it reads in `FEATURE_CONVERTER_CLS` (as T5X's
models do); `tasks.pipeline` maps the class's `name` to the SeqIO converter that builds
training batches. The same class builds the batches that decoding and scoring need from
token lists, and reads a prompt and target back from one converter row, so no caller
re-derives a layout by hand.

Conventions (SeqIO's): id 0 is padding, and a decoder input is its target shifted right
behind a 0 (BOS). A prompt of a decoder-only model is the prefix-LM input part, marked by
`decoder_causal_attention` (1 over BOS and the prompt); an encoder-decoder's prompt is its
encoder input.
"""

from typing import ClassVar, Mapping, Optional, Sequence, Union

import numpy as np

from model_zoo.errors import ConfigError

Batch = Mapping[str, np.ndarray]
# Token ids, or an ASR utterance's frames [frames, mels].
Prompt = Union[Sequence[int], np.ndarray]


def loss_weights(batch: Mapping):
  """Which target positions count: `decoder_loss_weights`, else every non-padding target."""
  targets = batch["decoder_target_tokens"]
  weights = batch.get("decoder_loss_weights")
  return (targets > 0 if weights is None else weights).astype(np.float32)


def pad_rows(rows_of_ids: Sequence[Sequence[int]], rows: int, length: int) -> np.ndarray:
  out = np.zeros((rows, length), np.int32)
  for i, ids in enumerate(rows_of_ids):
    out[i, : len(ids)] = ids
  return out


def _shift_right(targets: np.ndarray) -> np.ndarray:
  return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


class FeatureConverter:
  """One SeqIO converter's batch layout; subclasses are used as classes, never instantiated."""

  name: ClassVar[str]  # tasks.pipeline's key for the SeqIO converter class
  token_prompts: ClassVar[bool] = True  # False: prompts are frames (ASR), not text
  model_features: ClassVar[tuple[str, ...]]  # every batch feature a model may read
  required_features: ClassVar[tuple[str, ...]]  # those a batch must hold

  @classmethod
  def decode_length(cls, task_feature_lengths: Mapping[str, int]) -> int:
    """The sequence length that holds a task's prompt and continuation."""
    raise NotImplementedError

  @classmethod
  def prompt_room(
      cls, length: int, target_length: int, scoring: bool, prompt_length: Optional[int] = None
  ) -> tuple[int, str]:
    """(how many prompt tokens fit `length`, why) when scoring a target or generating.

    `prompt_length`, here and below, is the encoder input's length where it is not `length`
    (an ASR model's frames, the task's "inputs" length); the token layouts ignore it."""
    raise NotImplementedError

  @classmethod
  def prompt_batch(
      cls, prompts: Sequence[Prompt], rows: int, length: int, prompt_length: Optional[int] = None
  ) -> dict:
    """`rows` rows of `length` whose prompts are `prompts` (the rest empty), to continue."""
    raise NotImplementedError

  @classmethod
  def scoring_batch(
      cls,
      prompts: Sequence[Prompt],
      targets: Sequence[Sequence[int]],
      rows: int,
      length: int,
      prompt_length: Optional[int] = None,
  ) -> dict:
    """Rows whose loss-weighted targets are `targets` given `prompts` (log p(target | prompt))."""
    raise NotImplementedError

  @classmethod
  def row_tokens(cls, row: Mapping[str, np.ndarray]) -> tuple[Prompt, list[int]]:
    """(prompt, target) of one unpacked row of this converter's batches: token ids (an ASR
    row's prompt: its real frames, [frames, mels])."""
    raise NotImplementedError

  @classmethod
  def without_loss(cls, batch: Batch) -> dict:
    """`batch` with every loss weight 0: a collective step's filler that changes no metric."""
    return {**batch, "decoder_loss_weights": np.zeros_like(batch["decoder_target_tokens"])}

  @classmethod
  def _targets(cls, row: Mapping[str, np.ndarray]) -> list[int]:
    return [int(t) for t, w in zip(row["decoder_target_tokens"], loss_weights(row)) if w > 0]


class DecoderFeatureConverter(FeatureConverter):
  """A causal decoder-only LM (SeqIO's DecoderFeatureConverter); inputs, if any, are a prompt."""

  name = "decoder"
  model_features = (
      "decoder_input_tokens",
      "decoder_target_tokens",
      "decoder_segment_ids",
      "decoder_positions",
  )
  required_features = ("decoder_input_tokens", "decoder_target_tokens")

  @classmethod
  def decode_length(cls, task_feature_lengths):
    return sum(task_feature_lengths.values())

  @classmethod
  def prompt_room(cls, length, target_length, scoring, prompt_length=None):
    if scoring:
      return length - target_length, f"the prompt and its {target_length}-token target share it"
    return length - 1, "the prompt and at least one generated token share it"

  @classmethod
  def prompt_batch(cls, prompts, rows, length, prompt_length=None):
    inputs = np.zeros((rows, length), np.int32)
    prefix = np.zeros((rows, length), np.int32)
    for i, ids in enumerate(prompts):
      if len(ids) > length - 1:
        raise ConfigError(
            f"Prompt {i} has {len(ids)} tokens but the decode length is {length} (prompt + BOS "
            "must fit): raise the length or shorten the prompt."
        )
      inputs[i, 1 : len(ids) + 1] = ids
      prefix[i, : len(ids) + 1] = 1
    return {
        "decoder_input_tokens": inputs,
        "decoder_target_tokens": np.zeros_like(inputs),
        "decoder_causal_attention": prefix,
    }

  @classmethod
  def scoring_batch(cls, prompts, targets, rows, length, prompt_length=None):
    """Prompt then target in one sequence; only the target carries loss weight."""
    sequences = pad_rows([list(p) + list(t) for p, t in zip(prompts, targets)], rows, length)
    weights, prefix = np.zeros_like(sequences), np.zeros_like(sequences)
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
      weights[i, len(prompt) : len(prompt) + len(target)] = 1
      prefix[i, : len(prompt) + 1] = 1  # BOS and the prompt, as SeqIO's prefix-LM converter
    return {
        "decoder_input_tokens": _shift_right(sequences),
        "decoder_target_tokens": sequences,
        "decoder_loss_weights": weights,
        "decoder_causal_attention": prefix,
    }

  @classmethod
  def row_tokens(cls, row):
    return [], cls._targets(row)


class PrefixLMFeatureConverter(DecoderFeatureConverter):
  """A decoder-only prefix LM (SeqIO's PrefixLMFeatureConverter): bidirectional over inputs."""

  name = "prefix_lm"
  model_features = DecoderFeatureConverter.model_features + ("decoder_causal_attention",)

  @classmethod
  def row_tokens(cls, row):
    """The prompt sits after BOS, where causal attention is 1."""
    end = int(np.sum(row["decoder_causal_attention"]))
    return [int(t) for t in row["decoder_input_tokens"][1:end]], cls._targets(row)


class PrefixScorerFeatureConverter(DecoderFeatureConverter):
  """Rollouts that train a prefix scorer (controlled decoding, model_zoo/prefix_scorer.py).

  A causal LM's prompt and sampled continuation, laid out as SeqIO's prefix-LM converter
  lays them out (loss weight on the continuation only; `decoder_causal_attention` marks BOS
  and the prompt), plus `decoder_rewards` [batch, length] float32: the row's reward at every
  non-padding position, 0 in padding. Rows are never packed: a reward belongs to one rollout.
  The model attends causally, as the base model it guides decodes.
  """

  name = "prefix_scorer"  # the forward pass reads the tokens; the loss, the rewards too

  @classmethod
  def row_tokens(cls, row):
    return PrefixLMFeatureConverter.row_tokens(row)


class EncDecFeatureConverter(FeatureConverter):
  """An encoder-decoder (SeqIO's EncDecFeatureConverter): the prompt is the encoder input."""

  name = "encdec"
  model_features = (
      "encoder_input_tokens",
      "decoder_input_tokens",
      "decoder_target_tokens",
      "encoder_segment_ids",
      "decoder_segment_ids",
      "encoder_positions",
      "decoder_positions",
  )
  required_features = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")

  @classmethod
  def decode_length(cls, task_feature_lengths):
    return max(task_feature_lengths.values())

  @classmethod
  def prompt_room(cls, length, target_length, scoring, prompt_length=None):
    return length, "the encoder input"

  @classmethod
  def prompt_batch(cls, prompts, rows, length, prompt_length=None):
    return cls.scoring_batch(prompts, [], rows, length)

  @classmethod
  def scoring_batch(cls, prompts, targets, rows, length, prompt_length=None):
    target_tokens = pad_rows(targets, rows, length)
    return {
        "encoder_input_tokens": pad_rows(prompts, rows, length),
        "decoder_input_tokens": _shift_right(target_tokens),
        "decoder_target_tokens": target_tokens,
    }

  @classmethod
  def row_tokens(cls, row):
    return [int(t) for t in row["encoder_input_tokens"] if t > 0], cls._targets(row)


class AsrFeatureConverter(FeatureConverter):
  """Speech recognition (model_zoo/asr, tasks/asr): log-mel frames into the encoder.

  `encoder_input_features` [batch, frames, mels] float32 with `encoder_input_mask` [batch,
  frames] (1 on real frames), and the decoder features of the encoder-decoder converter. A
  prompt is an utterance's real frames, [frames, mels]; batches hold `prompt_length` frames
  (the task's "inputs" length), which every layout here needs.
  """

  name = "asr"
  token_prompts = False
  num_mel_bins = 80  # the task's log-mels (tasks/asr/features.py reads it from here)
  model_features = (
      "encoder_input_features",
      "encoder_input_mask",
      "decoder_input_tokens",
      "decoder_target_tokens",
      "decoder_segment_ids",
      "decoder_positions",
  )
  required_features = model_features[:4]

  @classmethod
  def decode_length(cls, task_feature_lengths):
    return task_feature_lengths["targets"]

  @classmethod
  def prompt_room(cls, length, target_length, scoring, prompt_length=None):
    return _frames(prompt_length), "the encoder's frames, TASK_FEATURE_LENGTHS['inputs']"

  @classmethod
  def prompt_batch(cls, prompts, rows, length, prompt_length=None):
    return cls.scoring_batch(prompts, [], rows, length, prompt_length)

  @classmethod
  def scoring_batch(cls, prompts, targets, rows, length, prompt_length=None):
    frames = _frames(prompt_length)
    features = np.zeros((rows, frames, cls.num_mel_bins), np.float32)
    mask = np.zeros((rows, frames), np.int32)
    for i, prompt in enumerate(prompts):
      if np.shape(prompt)[1:] != (cls.num_mel_bins,):
        raise ConfigError(
            f"ASR prompt {i} has shape {np.shape(prompt)}; expected [frames, "
            f"{cls.num_mel_bins}] log-mel frames (tasks/asr/features.py)."
        )
      features[i, : len(prompt)] = prompt
      mask[i, : len(prompt)] = 1
    target_tokens = pad_rows(targets, rows, length)
    return {
        "encoder_input_features": features,
        "encoder_input_mask": mask,
        "decoder_input_tokens": _shift_right(target_tokens),
        "decoder_target_tokens": target_tokens,
    }

  @classmethod
  def row_tokens(cls, row):
    frames = int(np.sum(row["encoder_input_mask"]))
    return np.asarray(row["encoder_input_features"][:frames], np.float32), cls._targets(row)


def _frames(prompt_length: Optional[int]) -> int:
  if prompt_length is None:
    raise ConfigError(
        "An ASR batch needs its frame count: TASK_FEATURE_LENGTHS['inputs'] (pass "
        "prompt_length); gin/mixtures/asr.gin sets it."
    )
  return prompt_length


class SpaeFeatureConverter(FeatureConverter):
  """Images with words (model_zoo/spae, tasks/spae): an autoencoder's batches, no text prompts.

  `image` [batch, side, side, channels] float32 in [0, 1] (the task's "image" length is the
  side) and `semantic_tokens` [batch, tokens] int32: the image's word in the frozen LM's
  vocabulary, 0-padded (the task's "targets"), which the semantic loss pulls the upper pyramid
  layers toward. `example_weights` [batch] (1 when absent) lets a filler batch count for
  nothing. Text prompts do not apply: SPAE's in-context use builds its own LM batches.
  """

  name = "spae"
  token_prompts = False
  num_channels = 3  # RGB (tasks/spae reads it from here)
  model_features = ("image", "semantic_tokens", "example_weights")
  required_features = ("image",)

  @classmethod
  def decode_length(cls, task_feature_lengths):
    return task_feature_lengths["targets"]

  @classmethod
  def prompt_room(cls, length, target_length, scoring, prompt_length=None):
    raise _no_text_prompts()

  @classmethod
  def prompt_batch(cls, prompts, rows, length, prompt_length=None):
    raise _no_text_prompts()

  @classmethod
  def scoring_batch(cls, prompts, targets, rows, length, prompt_length=None):
    raise _no_text_prompts()

  @classmethod
  def row_tokens(cls, row):
    raise _no_text_prompts()

  @classmethod
  def without_loss(cls, batch):
    return {**batch, "example_weights": np.zeros(len(batch["image"]), np.float32)}


def example_weights(batch: Mapping):
  """Which rows of an image batch count: `example_weights`, else every row."""
  weights = batch.get("example_weights")
  return np.ones(len(batch["image"]), np.float32) if weights is None else weights


def _no_text_prompts() -> ConfigError:
  return ConfigError(
      "SPAE models read images, not text prompts: `python -m trainers.spae_lm` encodes image "
      "files, classifies and draws images with a frozen LM; pick a text model for this entry "
      "point."
  )


BY_NAME: dict[str, type[FeatureConverter]] = {
    c.name: c
    for c in (
        DecoderFeatureConverter,
        PrefixLMFeatureConverter,
        PrefixScorerFeatureConverter,
        EncDecFeatureConverter,
        AsrFeatureConverter,
        SpaeFeatureConverter,
    )
}


def strip_padding(prompts: np.ndarray, padding: str = "right") -> list[list[int]]:
  """The token lists of a [batch, prompt_length] array of 0-padded prompts, padded either side."""
  if padding not in ("left", "right"):
    raise ConfigError(f"padding={padding!r}; expected 'left' or 'right'.")
  rows = []
  for row in np.asarray(prompts):
    nonzero = np.flatnonzero(row)
    if not len(nonzero):
      rows.append([])
    elif padding == "right":
      rows.append(row[: nonzero[-1] + 1].tolist())
    else:
      rows.append(row[nonzero[0] :].tolist())
  return rows
