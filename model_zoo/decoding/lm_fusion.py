"""Shallow fusion as a decoder a run config names: a language model in another decoder's loop.

`ShallowFusion(lm=FusedLM(model, params, weight), decoder=BeamSearch(...), length_bonus=beta)`
decodes the primary model (an ASR model, say) with its own decoder, every token scored
log p_primary + lambda log p_LM + beta, unrenormalised (`fusion.shallow_fusion`): a finished
hypothesis y scores log p_ASR(y | x) + lambda log p_LM(y) + beta |y|, EOS included, divided
by beam search's length penalty when alpha > 0. The LM starts from BOS with no prompt, beside
each row the Model API decodes (`prepare_inputs`). It must share the primary's vocabulary.
The LM's parameters are the decoder's `params`, so a compiled step takes them as arguments.
"""

import dataclasses
from typing import Any, Callable

import gin
import jax

from model_zoo.decoding import base, beam_search, fusion
from model_zoo.errors import ConfigError


@gin.configurable
@dataclasses.dataclass(frozen=True)
class FusedLM:
  """A language model (a Model of model_zoo.models) with its parameters and weight lambda."""

  model: Any
  params: Any
  weight: float = 0.3

  def __post_init__(self):
    if not self.weight >= 0:
      raise ConfigError(
          f"FusedLM.weight={self.weight}: lambda must be >= 0 (0 decodes without the LM's "
          "say; a negative weight would reward what the LM finds unlikely)."
      )


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ShallowFusion:
  """`decoder` (default beam search, 4 beams) over log p + lambda log p_LM + beta per token."""

  lm: FusedLM
  decoder: Callable = beam_search.BeamSearch()
  length_bonus: float = 0.0

  @property
  def rows_per_example(self) -> int:
    return self.decoder.rows_per_example

  @property
  def params(self) -> Any:
    return self.lm.params

  def with_params(self, params: Any) -> "ShallowFusion":
    return base.replaced(self, lm=base.replaced(self.lm, params=params))

  def prepare_inputs(self, inputs: base.DecodeInputs, batch) -> base.DecodeInputs:
    """The primary's rows fused with the LM's, which start from BOS with no prompt."""
    del batch  # the LM reads none of the primary's inputs
    rows = inputs.first_token.shape[0]
    lm_batch = self.lm.model.prompt_batch([], rows, inputs.length)
    lm_inputs = self.lm.model.decode_inputs(self.lm.params, lm_batch)
    self._check_vocabularies(inputs, lm_inputs)
    return fusion.shallow_fusion(
        inputs, [(lm_inputs, self.lm.weight)], length_bonus=self.length_bonus, renormalize=False
    )

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    return self.decoder(inputs, rng=rng, eos_id=eos_id)

  @staticmethod
  def _check_vocabularies(inputs: base.DecodeInputs, lm_inputs: base.DecodeInputs) -> None:
    sizes = [
        jax.eval_shape(i.tokens_to_logits, i.first_token[:, None], i.cache)[0].shape[-1]
        for i in (inputs, lm_inputs)
    ]
    if sizes[0] != sizes[1]:
      raise ConfigError(
          f"Shallow fusion adds the LM's log-probs token by token, so the LM must share the "
          f"decoded model's vocabulary; the model has {sizes[0]} ids and the LM {sizes[1]}. "
          "Train the LM on text tokenised with the model's vocabulary (the ASR LM tasks, "
          "tasks/asr_lm, share the ASR tasks' vocabulary); podzoo maps no vocabularies."
      )
