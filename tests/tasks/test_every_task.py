"""Every task podzoo ships yields batches of the shapes its feature converter declares."""

import numpy as np
import pytest
import seqio

from tasks import pipeline, quickstart
from tasks.asr_lm import tasks as asr_lm
from tasks.flan import mixing as flan
from tasks.flan import tasks as flan_tasks  # noqa: F401  (registers the Flan tasks)
from tasks.langid import tasks as langid
from tasks.mt import tasks as mt
from tasks.parallel import corpus
from tasks.pretraining import tasks as pretraining
from tasks.ul2 import tasks as ul2

BATCH = 2
# MT and MASS have a task per corpus language (~280 in all): a batch of each would add
# minutes to every run while testing the same code. Their tasks are built alike, and what
# differs between languages is the text, so the sample takes one language per script
# (Latin: a locale with a region and one with a modifier; CJK: the three zh variants and ja
# differ in script and tags), and the rest are checked registered and in the mixture.
SCRIPT_SAMPLE = (
    "en", "de", "pt_BR", "sr@latin", "ru", "el", "ar", "he", "hi", "bn", "ta", "th",
    "zh_CN", "zh_TW", "ja", "ko", "ka", "my", "dz",
)  # fmt: skip
LENGTHS = {"decoder": {"targets": 256}, "encdec": {"inputs": 512, "targets": 256}}
SHAPES = {
    "decoder": {"decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"},
    "encdec": {
        "encoder_input_tokens",
        "decoder_target_tokens",
        "decoder_input_tokens",
        "decoder_loss_weights",
    },
}


def shipped_tasks() -> list[str]:
  """The tasks of the shipped mixtures, plus those no mixture includes by default."""
  names = {quickstart.TASK_NAME, langid.TASK_NAME, pretraining.LM_TASK}
  names |= {mt.mass_task_name(lang) for lang in corpus.LANGUAGES}
  for mixture in (
      ul2.MIXTURE_NAME,
      asr_lm.MIXTURE_NAME,
      mt.MIXTURE_NAME,
      flan.MIXTURE_NAME,
      pretraining.UL2_MIXTURE,
  ):
    names |= {task.name for task in seqio.get_mixture_or_task(mixture).tasks}
  return sorted(names)


def sampled_tasks() -> list[str]:
  """`shipped_tasks()` with the MT and MASS tasks of SCRIPT_SAMPLE's languages only."""
  per_language = set(mt.default_translation_tasks()) | {
      mt.mass_task_name(lang) for lang in corpus.LANGUAGES
  }
  sample = set(mt.default_translation_tasks(SCRIPT_SAMPLE)) | {
      mt.mass_task_name(lang) for lang in SCRIPT_SAMPLE
  }
  return [name for name in shipped_tasks() if name not in per_language or name in sample]


def test_shipped_tasks_cover_every_family():
  names = shipped_tasks()
  languages = len(corpus.LANGUAGES)
  mt_tasks = 2 * (languages - 1) + languages  # both directions with English; MASS
  assert len(names) == 1 + 1 + 1 + 4 + 4 + 8 + mt_tasks + len(flan.mixing_rates())
  assert len(flan.mixing_rates()) >= 12
  assert len(sampled_tasks()) == len(names) - mt_tasks + 3 * len(SCRIPT_SAMPLE) - 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sampled_tasks())
def test_task_yields_batches_of_the_declared_shapes(name):
  task = seqio.get_mixture_or_task(name)
  converter = "encdec" if "inputs" in task.output_features else "decoder"
  lengths = LENGTHS[converter]
  batch = next(
      pipeline.get_batch_iterator(
          name, lengths, "validation", BATCH, feature_converter=converter, pack=False,
          shuffle=False, num_epochs=1,
      )
  )  # fmt: skip
  assert set(batch) == SHAPES[converter]
  for key, array in batch.items():
    length = lengths["inputs"] if key.startswith("encoder") else lengths["targets"]
    assert array.shape == (BATCH, length) and array.dtype == np.int32
  vocab_size = task.output_features["targets"].vocabulary.vocab_size
  targets = batch["decoder_target_tokens"]
  assert 0 <= targets.min() and targets.max() < vocab_size
  assert (targets == task.output_features["targets"].vocabulary.eos_id).sum(axis=1).min() == 1
  np.testing.assert_array_equal(batch["decoder_loss_weights"], targets > 0)
  if converter == "encdec":
    assert (batch["encoder_input_tokens"] > 0).sum(axis=1).min() > 0
