"""The decoder-only size ladder: a target parameter count -> the TransformerConfig dims.

The scaling experiment (tools/scaling_experiment.py) and the sizing calculator
(tools/compute_optimal.py) both size models here, so a fitted law and the configs it
recommends speak of the same models. Sizes are NON-embedding parameters N (Kaplan et al.
2020): the embedding table is left out, because at the CPU experiment's sizes it would be
most of the model while costing a token almost nothing, and a law in total parameters
would bend with the vocabulary rather than with the model.

The ladder's shape (gin/models/decoder_only.gin's architecture: SwiGLU, tied embeddings,
RMS norms without biases, PaLM's multi-query attention):
  * emb_dim d: a multiple of the head dimension; head_dim 32 below d = 1024, 64 below
    2048, 128 above (the zoo's tiny and small configs, GPT-3 and LLaMA's sizes);
  * preferred depth d / aspect(d), aspect = clip(2 sqrt(d), 32, 128): d/32 for the tiny
    models (the zoo's decoder_only_tiny: 128 wide, 4 deep), growing to GPT-3 2.7B's
    2560/32 and GPT-3 175B's 12288/96; the depth may stray up to 2x either side of it,
    which loses little (Kaplan et al. find the loss flat over a wide range of aspect
    ratios) and makes the rungs fine enough to hit a target N closely;
  * mlp_dim 3 d (three SwiGLU matrices: 9 d^2 per layer); num_heads d / head_dim; one
    key/value head.
"""

import dataclasses
import math

from model_zoo.errors import ConfigError

DEPTH_TOLERANCE = 2.0  # the depth may be this factor off the preferred one
SIZE_TOLERANCE = 0.05  # rungs this close to a target count as hitting it
MAX_EMB_DIM = 65536  # beyond any model this ladder is asked for (~10^14 parameters)


@dataclasses.dataclass(frozen=True)
class ModelSize:
  """One rung: the TransformerConfig dims that the ladder sets."""

  emb_dim: int
  num_layers: int
  num_heads: int
  head_dim: int
  mlp_dim: int
  num_kv_heads: int = 1

  @property
  def non_embedding_params(self) -> int:
    """Exact: per layer the query/out (d x H x Q each), key/value (d x K x Q each), three MLP
    matrices and two norm scales; plus the final norm (checked against the model's own
    parameters in tests/tools/test_scaling_experiment.py)."""
    d, q = self.emb_dim, self.head_dim
    attention = 2 * d * self.num_heads * q + 2 * d * self.num_kv_heads * q
    layer = attention + 3 * d * self.mlp_dim + 2 * d
    return self.num_layers * layer + d

  def total_params(self, vocab_size: int) -> int:
    """With the tied embedding table of `vocab_size` rows."""
    return self.non_embedding_params + vocab_size * self.emb_dim

  def gin_bindings(self) -> list[str]:
    """ "TransformerConfig.NAME = VALUE" for each dim."""
    return [f"TransformerConfig.{k} = {v}" for k, v in dataclasses.asdict(self).items()]


def head_dim(emb_dim: int) -> int:
  return 32 if emb_dim < 1024 else 64 if emb_dim < 2048 else 128


def preferred_layers(emb_dim: int) -> float:
  """emb_dim / aspect(emb_dim), aspect = clip(2 sqrt(emb_dim), 32, 128) (module docstring)."""
  return emb_dim / min(max(2.0 * math.sqrt(emb_dim), 32.0), 128.0)


def size(emb_dim: int, num_layers: int) -> ModelSize:
  """The rung of width `emb_dim` (a multiple of head_dim(emb_dim)) and depth `num_layers`."""
  q = head_dim(emb_dim)
  if emb_dim % q or num_layers < 1:
    raise ConfigError(
        f"emb_dim={emb_dim} must be a positive multiple of {q} and num_layers={num_layers} >= 1."
    )
  return ModelSize(emb_dim, num_layers, emb_dim // q, q, 3 * emb_dim)


def _rungs(emb_dim: int) -> list[ModelSize]:
  """The rungs of width `emb_dim`, shallowest first."""
  preferred = preferred_layers(emb_dim)
  low = max(1, math.ceil(preferred / DEPTH_TOLERANCE))
  high = max(low, math.floor(preferred * DEPTH_TOLERANCE))
  return [size(emb_dim, layers) for layers in range(low, high + 1)]


def for_params(target: float) -> ModelSize:
  """The rung nearest the preferred depth among those within SIZE_TOLERANCE of `target`
  non-embedding parameters; where none is, the rung nearest `target` (in ratio)."""
  if not (math.isfinite(target) and target > 0):
    raise ConfigError(f"a model size must be a positive number of parameters; got {target}.")
  best, emb_dim = None, 32
  while emb_dim <= MAX_EMB_DIM:
    rungs = _rungs(emb_dim)
    if rungs[0].non_embedding_params > 2 * target:  # and every wider rung is larger still
      break
    preferred = preferred_layers(emb_dim)
    for rung in rungs:
      miss = abs(math.log(rung.non_embedding_params / target))
      key = (max(miss, math.log1p(SIZE_TOLERANCE)), abs(math.log(rung.num_layers / preferred)))
      if best is None or key < best[0]:
        best = (key, rung)
    emb_dim += head_dim(emb_dim)
  if best is None or best[0][0] > math.log(2.0):
    raise ConfigError(
        f"the size ladder has no model within 2x of {target:.3g} non-embedding parameters; "
        f"ask for {size(32, 1).non_embedding_params:,} to ~1e13."
    )
  return best[1]
