"""One model's replica on one device group: scoring and generation through its pipeline
stages. A one-stage group generates in one compiled decode loop (Model.predict_batch,
tensor-sharded); a group of several stages steps each token through them
(staged_decoding.StagedDecoder), each stage holding its own layers' KV cache.

Batches are padded up to a power of two of rows (what a profile's batch sizes round up to),
so each size compiles once; every call returns device arrays at once (JAX dispatches
asynchronously), and the caller waits for them, so the next batch can start on the first
stage while this one is still in the later ones.
"""

import dataclasses
from typing import Any, Optional, Sequence

import jax
from jax.sharding import PartitionSpec as P

from model_zoo import feature_converters
from model_zoo.decoding.sampling import Sampling
from model_zoo.errors import ConfigError
from trainers.infer_examples import Codec
from trainers.serving.profiles import ParallelConfig
from trainers.serving.staged import StagedModel
from trainers.serving.staged_decoding import StagedDecoder


@dataclasses.dataclass(frozen=True)
class ServedModel:
  """A model the server was started with: its name in requests, the Model and its
  parameters (on the host), text <-> ids, the row length (prompt + output tokens) and the
  latency objective of its requests (None: served whenever they can be)."""

  name: str
  model: Any
  params: Any
  codec: Codec
  max_length: int
  slo_s: Optional[float] = None

  def __post_init__(self):
    if getattr(self.model, "is_prefix_lm", None) is not False:
      raise ConfigError(
          f"model {self.name!r}: the server runs causal decoder-only models (DecoderOnlyModel "
          "with the 'decoder' feature converter); serve this one with trainers.infer."
      )


def padded_rows(rows: int) -> int:
  return 1 << max(rows - 1, 0).bit_length()


class Replica:
  """`served` placed on `devices` as `config`."""

  def __init__(self, served: ServedModel, config: ParallelConfig, devices: Sequence[jax.Device]):
    self.served = served
    self.config = config
    cfg = served.model.module.config
    self.staged = StagedModel(cfg, served.params, config, devices)
    self._generate = {}

  def score(self, rows: Sequence[tuple[list[int], list[int]]]) -> jax.Array:
    """log p(target | prompt) of each (prompt ids, target ids) row (padded rows after them)."""
    n = padded_rows(len(rows))
    batch = self.served.model.scoring_batch(
        [p for p, _ in rows], [t for _, t in rows], n, self.served.max_length
    )
    return self.staged.score(
        batch["decoder_input_tokens"],
        batch["decoder_target_tokens"],
        feature_converters.loss_weights(batch),
    )

  def generate(
      self, prompts: Sequence[list[int]], decoder: Sampling, rng: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    """Generated ids [rows, length] and their scores, for each prompt (padded rows after)."""
    if decoder not in self._generate:
      self._generate[decoder] = self._generator(decoder)
    n = padded_rows(len(prompts))
    batch = self.served.model.prompt_batch(list(prompts), n, self.served.max_length)
    return self._generate[decoder](batch, rng)

  def _generator(self, decoder: Sampling):
    """(prompt batch, rng) -> (sequences, scores) on this group, compiled once per decoder."""
    model = self.served.model
    if self.config.stages > 1:
      staged = StagedDecoder(self.staged, decoder, model.eos_id, self.served.max_length)
      return lambda b, rng: staged(b["decoder_input_tokens"], b["decoder_causal_attention"], rng)
    partitioner = self.staged.partitioners[0]
    predict = partitioner.compile(
        lambda p, b, r: model.predict_batch(p, b, r, decoder=decoder),
        in_shardings=None,
        out_shardings=partitioner.sharding(P()),
    )
    # One stage holds the whole model's parameters, laid out as the model's own.
    return lambda b, rng: predict(
        self.staged.params[0], {k: self.staged.on_stage(0, v) for k, v in b.items()}, rng
    )
