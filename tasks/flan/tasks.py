"""SeqIO tasks of the Flan instruction mixtures, one per (instruction task, template variant).

`flan_<task>_<variant>`, e.g. `flan_translation_few_shot` or `flan_langid_zero_shot_options`,
for the instruction tasks of `mixing.INSTRUCTION_TASKS`; the `flan_podzoo` mixture samples
them by `mixing.mixing_rates()`. Every task yields "inputs" and "targets" on the parallel
corpus' vocabulary, so it trains an encoder-decoder (`encdec`) or a prefix LM (`prefix_lm`),
packed or not, and keeps three string features for inspection: "key" (the source
example's), "template" (the phrasing's name) and "exemplar_keys" (the few-shot exemplars'
source keys, space-separated). Importing this module registers them all; importing it
again is harmless.

Prompts are laid out in lines (answer options, blank lines between exemplars); the
parallel vocabulary has the line break as a piece of its own (T5's normalises it to a
space), so the model sees the layout too.
"""

import functools
from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks.flan import instructions, mixing, prompts, templates
from tasks.parallel import vocabulary

RENDERED = ("inputs", "targets", "template", "exemplar_keys")
# Token limits per template kind (targets with their EOS). An example over them is dropped,
# not cut: a cut prompt loses the question (it comes last), a cut target teaches a wrong
# answer. Each is the first multiple of 64 above every task's 99th percentile, measured on
# all train and validation renderings of seed 0 over the 93 corpus languages, line breaks
# counted as tokens (the highest task p99 / the max, that task in brackets):
#   zero_shot: inputs 111 / 473 (langid, options); targets 61 / 244 (translation)
#   few_shot: inputs 374 / 392 (arithmetic, options), 368 / 651 (langid, options),
#     303 / 733 (translation); targets 59 / 375 (translation)
#   cot: inputs 83 / 86; targets 78 / 80 (arithmetic)
# Every task keeps >= 99.1% of its examples (translation: zero-shot validation, few-shot
# train); the flan_podzoo mixture 99.61% of train and 99.68% of validation examples.
LENGTH_LIMITS = {
    "zero_shot": {"inputs": 128, "targets": 64},
    "few_shot": {"inputs": 384, "targets": 64},
    "cot": {"inputs": 128, "targets": 128},
}


@seqio.map_over_dataset(num_seeds=1)
def _stream_seed(unused_example, seed):
  return tf.stack(seed)


def render(
    dataset: tf.data.Dataset,
    *,
    instruction: instructions.InstructionTask,
    variant: instructions.Variant,
) -> tf.data.Dataset:
  """Source examples -> prompts (prompts.render_example); examples that ask nothing are dropped.

  One seed for the whole dataset (SeqIO's next seed for this preprocessor, from
  `seqio.map_over_dataset`), used with each example's key: choices do not depend on where
  an example lands in the stream.
  """
  if variant.kind == "few_shot":
    prompts.exemplar_pool(instruction)  # read the train split now, not inside the graph
  features = sorted(dataset.element_spec)
  seed = _stream_seed(tf.data.Dataset.from_tensors(0)).get_single_element()

  def render_numpy(seed, *values):
    example = {name: value.decode("utf-8") for name, value in zip(features, values)}
    rendered = prompts.render_example(instruction, variant, example, f"{seed[0]}_{seed[1]}")
    if rendered is None:
      return [b""] * len(RENDERED)
    strings = (
        rendered.inputs,
        rendered.targets,
        rendered.template,
        " ".join(rendered.exemplar_keys),
    )
    return [s.encode("utf-8") for s in strings]

  def render_example(example):
    values = tf.numpy_function(
        render_numpy,
        [seed, *(example[f] for f in features)],
        [tf.string] * len(RENDERED),
        stateful=False,
    )
    rendered = {name: tf.ensure_shape(value, []) for name, value in zip(RENDERED, values)}
    return {"key": example["key"], **rendered}

  rendered = dataset.map(render_example, num_parallel_calls=tf.data.AUTOTUNE)
  return rendered.filter(lambda ex: tf.strings.length(ex["inputs"]) > 0)


def drop_longer_than(dataset: tf.data.Dataset, *, limits: Mapping[str, int]) -> tf.data.Dataset:
  """Keeps tokenized examples whose inputs and targets plus EOS fit `limits`."""
  return dataset.filter(
      lambda ex: tf.logical_and(
          tf.size(ex["inputs"]) <= limits["inputs"],
          tf.size(ex["targets"]) + 1 <= limits["targets"],
      )
  )


def cot_answer(text: str, **unused_kwargs) -> str:
  """SeqIO postprocessor (called with example= and is_target=): a CoT text's final answer."""
  return templates.final_answer(text)


def _add_task(
    instruction: instructions.InstructionTask,
    variant: instructions.Variant,
    vocab: seqio.SentencePieceVocabulary,
) -> None:
  name = instructions.task_name(instruction, variant)
  if name in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      name,
      source=instruction.source(),
      preprocessors=[
          functools.partial(render, instruction=instruction, variant=variant),
          seqio.preprocessors.tokenize,
          functools.partial(drop_longer_than, limits=LENGTH_LIMITS[variant.kind]),
          # A cache job renders each prompt once, with its own seed (tasks/cache_job.py).
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      # No EOS after the inputs: in a prefix LM it would sit mid-sequence, and an encoder
      # sees where its inputs end anyway.
      output_features={
          "inputs": seqio.Feature(vocab, add_eos=False),
          "targets": seqio.Feature(vocab, add_eos=True),
      },
      # Chain-of-thought targets are scored on their final answer, not the rationale.
      postprocess_fn=cot_answer if variant.kind == "cot" else None,
      metric_fns=list(instruction.metric_fns),
      # The source shuffles whole examples (instructions.shuffling_source); this only
      # stirs neighbours, so that few prompts are rendered before the first batch.
      shuffle_buffer_size=64,
  )


def _register() -> None:
  vocab = vocabulary.parallel_vocabulary()
  for instruction in mixing.INSTRUCTION_TASKS:
    for variant in instruction.variants():
      _add_task(instruction, variant, vocab)
  if mixing.MIXTURE_NAME not in seqio.MixtureRegistry.names():
    mixing.register_flan_mixture(mixing.MIXTURE_NAME)


_register()
