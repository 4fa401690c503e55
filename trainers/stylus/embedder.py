"""Text embeddings from a podzoo decoder-only LM: the mean of its last layer's hidden states
over a text's positions (a prefix LM reads the text both ways, as an encoder would). Stylus
embeds the adapters' refined descriptions and the prompts with the same model, so retrieval
compares like with like; the embedder's name carries the model's fingerprint."""

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from model_zoo import models
from model_zoo.errors import ConfigError
from trainers import adapters

STACK = "decoder"  # the layer stack whose output is pooled (before the final norm)


class Embedder:
  """embed(texts) -> [len(texts), emb_dim] float32 rows of unit length."""

  def __init__(
      self,
      model: models.DecoderOnlyModel,
      params: Any,
      encode: Callable[[str], Sequence[int]],
      max_length: int = 64,
      batch_size: int = 16,
  ):
    if not isinstance(model, models.DecoderOnlyModel):
      raise ConfigError(
          f"the embedder pools a decoder-only LM's hidden states; got {type(model).__name__}"
      )
    self.model, self.params, self.encode = model, params, encode
    self.max_length, self.batch_size = max_length, batch_size
    self.name = f"podzoo-mean-pool:{adapters.fingerprint(params)}"
    self._hidden = jax.jit(self._hidden_states)

  def _hidden_states(self, params, batch):
    _, state = self.model.module.apply(
        {"params": params},
        **{k: batch[k] for k in self.model.FEATURE_CONVERTER_CLS.model_features if k in batch},
        capture_intermediates=lambda module, method: module.name == STACK and method == "__call__",
        mutable=["intermediates"],
    )
    return state["intermediates"][STACK]["__call__"][0].astype(jnp.float32)

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    ids = [list(self.encode(t))[: self.max_length - 1] for t in texts]
    if any(not x for x in ids):
      raise ConfigError("an empty text has no embedding; give every description some words")
    rows = []
    for start in range(0, len(ids), self.batch_size):
      chunk = ids[start : start + self.batch_size]
      batch = self.model.scoring_batch(chunk, [[]] * len(chunk), self.batch_size, self.max_length)
      hidden = np.asarray(self._hidden(self.params, batch))
      for i, text_ids in enumerate(chunk):  # BOS and the text's tokens: positions 0..len
        rows.append(hidden[i, : len(text_ids) + 1].mean(axis=0))
    vectors = np.stack(rows)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
