"""What shallow fusion (model_zoo/decoding/lm_fusion.py) needs from a run: the language model
restored from its run's checkpoint, and weights chosen per language.

A run config (gin/runs/asr_fusion.gin) binds, e.g.:

  evaluate.more_decoders = {"fused": @ShallowFusion()}
  ShallowFusion.lm = @restored_fused_lm()
  restored_fused_lm.model = @lm/DecoderOnlyModel()
  restored_fused_lm.model_dir = "/runs/asr_lm"
  restored_fused_lm.weight = @lm_weight/per_language()
  lm_weight/per_language.table = {"en": 0.3, "de": 0.2}

`tools/fusion_sweep.py` writes such tables, tuned on a dev split.
"""

from typing import Mapping, Optional

import gin

from model_zoo.decoding import lm_fusion
from model_zoo.errors import ConfigError
from trainers import cli, restore


@gin.configurable
def restored_fused_lm(
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    weight: float = 0.3,
    checkpoint_step: Optional[int] = None,
) -> lm_fusion.FusedLM:
  """The LM trained in `model_dir` (its newest checkpoint, or `checkpoint_step`) with weight
  lambda = `weight`; `model` is the Model that run trained (dense or GLaM)."""
  step, params = restore.restore_params(model, model_dir, checkpoint_step)
  cli.say(f"Restored the fused LM, step {step} of {model_dir} (lambda {weight}).")
  return lm_fusion.FusedLM(model=model, params=params, weight=weight)


@gin.configurable
def per_language(table: Mapping[str, float] = gin.REQUIRED, language: str = gin.REQUIRED) -> float:
  """`table[language]`: a fusion weight tuned for each language, chosen by the run's language."""
  if language not in table:
    raise ConfigError(
        f"per_language: no value for language {language!r} in {dict(table)}; add it to the "
        "table (tools/fusion_sweep.py tunes one per language) or pick another language."
    )
  return table[language]
