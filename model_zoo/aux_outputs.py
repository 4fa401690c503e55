"""What layers report beside their activations: auxiliary loss terms and metrics.

Layers `sow` scalars into two Flax collections, and `Model.loss_fn` (model_zoo/models.py)
reads them back, so a layer adds a loss term or a metric without the Model or the Trainer
changing:

- AUX_LOSS ("aux_loss"): loss terms (MoE balancing, router z-loss). `sow_aux_loss` sows
  weight * value: the loss gets exactly that term and its `aux/<path>` metric reports the
  same weighted number, so the metric shows what the loss got.
- AUX_METRICS ("aux_metrics"): diagnostics (router entropy, dropped tokens), reported as
  `metrics/<path>` and never added to the loss, so they carry no gradient.

- AUX_METRIC_ITEMS ("aux_metric_items"): a diagnostic with one value per item (each
  expert's load, when MoeConfig.report_expert_load asks), reported element by element as
  `metrics/<path>/<index>`; under `nn.scan` the layer (block) index comes first
  (`.../expert_load/<block>/<expert>`). Also never in the loss.

<path> is the sowing module's path and the sown name (`decoder/layers/mlp/balance`). Under
`nn.scan` (TransformerConfig.scan_layers) every sown value gets a leading layer axis: a
loss term is summed over it (what the same layers unrolled add to the loss) and a metric
is averaged over it, with its max over the layers beside it as `<path>/max` (two numbers
for the stack, however deep; unrolled layers report one each). Repeated
sows of one name in one module are summed (loss terms) or averaged (metrics) the same way.
This module is the one place those names live, so the layer stack (model_zoo/dense.py)
scans the collections without importing the Model API.
"""

import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

AUX_LOSS = "aux_loss"
AUX_METRICS = "aux_metrics"
AUX_METRIC_ITEMS = "aux_metric_items"
COLLECTIONS = (AUX_LOSS, AUX_METRICS, AUX_METRIC_ITEMS)  # what a layer stack scans and returns


def sow_aux_loss(module: nn.Module, name: str, value: jax.Array, weight: float = 1.0) -> None:
  """Adds weight * value (a scalar) to the training loss; reported as aux/<path>/name."""
  module.sow(AUX_LOSS, name, weight * value)


def sow_metric(module: nn.Module, name: str, value: jax.Array) -> None:
  """Reports `value` (a scalar, a mean over the batch) as metrics/<path>/name, outside the loss."""
  module.sow(AUX_METRICS, name, value)


def sow_metric_items(module: nn.Module, name: str, values: jax.Array) -> None:
  """Reports each element of `values` (one per item) as metrics/<path>/name/<index>."""
  module.sow(AUX_METRIC_ITEMS, name, values)


def loss_terms(collection: Any) -> dict[str, jax.Array]:
  """Each sown loss term by its path, summed over layers and repeated sows (fp32)."""
  return {
      path: sum(jnp.sum(x) for x in arrays) for path, arrays in _sown_by_path(collection).items()
  }


def metric_values(collection: Any) -> dict[str, jax.Array]:
  """Each sown metric by its path, averaged over layers and repeated sows (fp32); where a path
  holds several values (a scanned stack's layers), also their max, as <path>/max."""
  values = {}
  for path, arrays in _sown_by_path(collection).items():
    flat = jnp.concatenate([jnp.ravel(x) for x in arrays])
    values[path] = jnp.mean(flat)
    if flat.size > 1:
      values[f"{path}/max"] = jnp.max(flat)
  return values


def metric_items(collection: Any) -> dict[str, jax.Array]:
  """Each element of each sown per-item metric, by <path>/<index> (indices '/'-joined, a
  scanned stack's layer first); repeated sows of one name are averaged."""
  values = {}
  for path, arrays in _sown_by_path(collection).items():
    mean = sum(arrays) / len(arrays)
    for index in itertools.product(*map(range, mean.shape)):
      values["/".join([path, *map(str, index)])] = mean[index]
  return values


def _sown_by_path(collection: Any) -> dict[str, list[jax.Array]]:
  """The fp32 arrays sown under each "/"-joined path (sow keeps a tuple per name)."""
  flat = traverse_util.flatten_dict(collection, sep="/")
  return {
      path: [jnp.asarray(x, jnp.float32) for x in jax.tree.leaves(sown)]
      for path, sown in flat.items()
  }
