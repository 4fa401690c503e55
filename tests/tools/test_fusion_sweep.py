"""tools/fusion_sweep.py: each language's best (lambda, beta), and the gin file it writes."""

import gin
import pytest

from model_zoo.errors import ConfigError
from tools import fusion_sweep
from trainers import shallow_fusion

# language -> decoder name -> WER, as word_error_rates returns it
TABLE = {
    "de": {
        "beam": 40.0,
        "fused_l0_b0": 40.0,
        "fused_l0_b1": 38.0,
        "fused_l0.5_b0": 38.0,
        "fused_l0.5_b1": 50.0,
    },
    "en": {
        "beam": 30.0,
        "fused_l0_b0": 30.0,
        "fused_l0_b1": 31.0,
        "fused_l0.5_b0": 35.0,
        "fused_l0.5_b1": 20.0,
    },
}


def test_each_language_gets_its_lowest_wer_pair_ties_to_the_smaller_weight(monkeypatch):
  monkeypatch.setattr(fusion_sweep, "fused", lambda restored, w, b, beam: (w, b))
  monkeypatch.setattr(fusion_sweep, "word_error_rates", lambda restored, decoders: TABLE)
  results = fusion_sweep.sweep(None, [0.0, 0.5], [0.0, 1.0], beam_size=2)
  assert results["best"]["de"] == {
      "lm_weight": 0.0,
      "length_bonus": 1.0,
      "wer": 38.0,
      "plain": 40.0,
  }
  assert results["best"]["en"] == {
      "lm_weight": 0.5,
      "length_bonus": 1.0,
      "wer": 20.0,
      "plain": 30.0,
  }
  assert results["grid"] == [[0.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.5, 1.0]]


def test_the_gin_file_sets_the_tables_that_asr_fusion_gin_reads():
  best = {
      "de": {"lm_weight": 0.2, "length_bonus": 1.5},
      "en": {"lm_weight": 0.3, "length_bonus": 0.5},
  }
  gin.clear_config()
  try:
    gin.parse_config(
        fusion_sweep.gin_text(best)
        + "lm_weight/per_language.table = %LM_WEIGHTS\n"
        + "length_bonus/per_language.table = %LENGTH_BONUSES\n"
        + "per_language.language = 'de'\n"
    )
    with gin.config_scope("lm_weight"):
      assert shallow_fusion.per_language() == 0.2
    with gin.config_scope("length_bonus"):
      assert shallow_fusion.per_language() == 1.5
  finally:
    gin.clear_config()


def test_a_language_missing_from_the_table_is_named():
  with pytest.raises(ConfigError, match=r"no value for language 'fr'.*fusion_sweep"):
    shallow_fusion.per_language({"de": 0.2}, "fr")


@pytest.mark.parametrize(
    "task,lang", [("asr_de", "de"), ("asr_tiny_en", "en"), ("asr_fr_specaugment", "fr")]
)
def test_the_language_of_a_task(task, lang):
  assert fusion_sweep.language(task) == lang
