"""`python -m trainers.infer --gin_file=... --gin.MODEL_DIR=...`: predict or score with a run.

Examples come from `infer.input_file` or, when it is None, from the split of
`infer.dataset_cfg` (read unpacked, in order, once):
  - a `.jsonl` file: one object per line, {"input": prompt}, plus "target" (text) for
    mode="score" (passed through as a reference by the predict modes);
  - any other file: one prompt per line; blank lines are skipped.
`infer.dataset_cfg` also names the task whose vocabularies encode and decode text; EOS
is appended where the task's feature adds one (a decoder-only LM's prompt gets none).
The Model lays out its own batches (`model.prompt_batch`, `model.scoring_batch`: the
prefix of a decoder-only model, the encoder input of an encoder-decoder); this module only
reads examples, calls the Model and writes outputs. `max_length` is the decode length,
prompt included.

Writes OUTPUT_DIR/<mode>-<step>.jsonl atomically, one object per example, in input order
(OUTPUT_DIR: infer.output_dir, default MODEL_DIR/inference):
  predict           {"input", "output", "score"} (+ "target" when given; + "outputs" and
                    "scores", every decode best first, with infer.return_all_decodes=True)
  predict_with_aux  predict's fields + "aux": the model's aux outputs for every decode
  score             {"input", "target", "score"}: log p(target | input)
and then prints the first results (texts cut at 100 characters) and the file's path.
A prediction's score is the decoder's: the log-probability of the output (EOS included)
for greedy and sampling, length-penalised for beam search with alpha > 0.

An earlier output of the same mode and step is never silently replaced: the run stops
before restoring a checkpoint unless infer.overwrite=True (or another infer.output_dir is
given). An OUTPUT_DIR that cannot be created or written also stops the run before any
decoding.
"""

import dataclasses
import functools
import itertools
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence

import gin
import jax
import numpy as np
from jax.experimental import multihost_utils

from model_zoo import feature_converters
from model_zoo.decoding import controlled, sampling
from model_zoo.errors import ConfigError
from trainers import cli, infer_examples, infer_outputs, metrics_writer, partitioning, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs read here bind)
from trainers.dataset_config import DatasetConfig
from trainers.infer_examples import Codec, Example
from trainers.trainer import Trainer

MODES = ("predict", "score", "predict_with_aux")


# --- batches ------------------------------------------------------------------------------
def model_batch(
    model,
    mode: str,
    examples: Sequence[Example],
    rows: int,
    length: int,
    prompt_length: Optional[int] = None,
) -> dict:
  """The model's batch of `examples` padded to `rows`: prompts to continue, or to score targets
  (`prompt_length`: an ASR model's frames per row)."""
  prompts = [e.prompt for e in examples]
  if mode == "score":
    targets = [e.target for e in examples]
    return model.scoring_batch(prompts, targets, rows, length, prompt_length)
  return model.prompt_batch(prompts, rows, length, prompt_length)


def _meta(examples: Sequence[Example], rows: int, width: int) -> dict[str, np.ndarray]:
  """What each row is (index, -1 for padding) and its ids, to turn into text after the gather.

  `width` holds any prompt or target: a split's reference target may be longer than max_length.
  """
  index = np.full((rows,), -1, np.int32)
  index[: len(examples)] = [e.index for e in examples]
  return {
      "index": index,
      "prompt": feature_converters.pad_rows([_prompt_ids(e) for e in examples], rows, width),
      "target": feature_converters.pad_rows([e.target for e in examples], rows, width),
  }


def _prompt_ids(example: Example) -> Sequence[int]:
  """The prompt's token ids; none for an ASR utterance's frames."""
  return [] if isinstance(example.prompt, np.ndarray) else example.prompt


def _chunks(examples: Iterable[Example], rows: int) -> Iterator[list[Example]]:
  """`rows` examples at a time. Steps are collective, so every process yields as many chunks,
  empty ones once its own share has run out."""
  iterator = iter(examples)
  while True:
    chunk = list(itertools.islice(iterator, rows))
    if not infer_outputs.on_any_process(bool(chunk)):
      return
    yield chunk


# --- running ------------------------------------------------------------------------------
def _model_fn(model, mode: str, decoder: Callable) -> Callable:
  """(params, decoder params, batch, rng) -> the outputs of `mode`; predictions keep every
  decode, best first. A decoder with parameters of its own (controlled decoding's prefix
  scorers: `params`, `with_params`) gets them as arguments, not as compiled-in constants."""

  def run(params, decoder_params, batch, rng):
    decoder_here = controlled.with_decoder_params(decoder, decoder_params)
    if mode == "score":
      return {"scores": model.score_batch(params, batch)}
    if mode == "predict":
      sequences, scores = model.predict_batch(
          params, batch, rng, decoder=decoder_here, return_all_decodes=True
      )
      return {"sequences": sequences, "scores": scores}
    sequences, aux = model.predict_batch_with_aux(
        params, batch, rng, decoder=decoder_here, return_all_decodes=True
    )
    return {"sequences": sequences, "scores": aux["scores"], "aux": aux}

  return run


def _run_batches(
    model_fn: Callable,
    params,
    decoder_params,
    partitioner: partitioning.Partitioner,
    batches: Iterable[tuple[dict, dict]],
    seed: int,
) -> Iterator[tuple[dict, dict]]:
  """(outputs, meta) of each global batch, gathered to every process as numpy."""
  jitted = jax.jit(
      lambda params, decoder_params, batch, meta, rng: (
          model_fn(params, decoder_params, batch, rng),
          meta,
      )
  )
  key = jax.random.PRNGKey(seed)
  for number, (batch, meta) in enumerate(batches):
    with partitioner.context():
      result = jitted(
          params,
          decoder_params,
          partitioner.shard_batch(batch),
          partitioner.shard_batch(meta),
          jax.random.fold_in(key, number),
      )
    yield jax.tree.map(np.asarray, multihost_utils.process_allgather(result, tiled=True))


# --- the entry point ----------------------------------------------------------------------
def _check_args(
    mode: str,
    dataset_cfg: Optional[DatasetConfig],
    batch_size: int,
    decoder,
    max_decode_rows: int,
) -> None:
  if mode not in MODES:
    raise ConfigError(f"infer.mode={mode!r} is not one of {MODES}.")
  if dataset_cfg is None:
    raise ConfigError(
        "infer.dataset_cfg is None; it names the task whose vocabulary encodes prompts and "
        "decodes outputs (and whose split is read without infer.input_file): bind it, e.g. "
        "infer.dataset_cfg = @validation/DatasetConfig()."
    )
  per_example = getattr(decoder, "rows_per_example", 1)
  rows = batch_size * per_example
  if mode != "score" and rows > max_decode_rows:
    raise ConfigError(
        f"infer.batch_size={batch_size} x {per_example} decodes per example "
        f"({type(decoder).__name__}.rows_per_example: num_decodes or beam_size) = {rows} decode "
        f"rows, over infer.max_decode_rows={max_decode_rows} (the memory budget); lower "
        f"--gin.infer.batch_size to "
        f"{max(max_decode_rows // per_example, 1)} or less, use fewer decodes, or raise "
        "--gin.infer.max_decode_rows."
    )


def _examples(data, model, mode: str, cfg: DatasetConfig, input_file, codec, fit, max_examples):
  """(this process's examples, texts by index or None, total or None). A file is read and
  checked here, before any checkpoint is restored; a split is streamed, one row per process
  and batch (so drop_remainder drops nothing)."""
  if input_file is None:
    one_row = dataclasses.replace(
        cfg, batch_size=jax.process_count(), shuffle=False, pack=False, num_epochs=1
    )
    rows = data.batches(one_row, model.FEATURE_CONVERTER_CLS)
    name = f"{cfg.mixture_or_task_name}/{cfg.split}"
    examples = infer_examples.split_examples(rows, model.FEATURE_CONVERTER_CLS, name, max_examples)
    return map(fit, examples), None, max_examples
  items = infer_examples.read_input_file(input_file, mode)[:max_examples]
  examples = [fit(e) for e in infer_examples.file_examples(items, codec, mode)]
  return examples, {i: item[:2] for i, item in enumerate(items)}, len(items)


@gin.configurable
def infer(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    mode: str = "predict",
    dataset_cfg: Optional[DatasetConfig] = None,
    input_file: Optional[str] = None,
    decoder: Optional[Callable] = None,
    return_all_decodes: bool = False,
    batch_size: int = 8,
    max_length: Optional[int] = None,
    truncate_prompts: bool = False,
    max_examples: Optional[int] = None,
    output_dir: Optional[str] = None,
    seed: int = 0,
    checkpoint_step: Optional[int] = None,
    max_decode_rows: int = 4096,
    overwrite: bool = False,
) -> str:
  """Runs `mode` (see the module doc) with a checkpoint of MODEL_DIR; returns the file written.

  `decoder` is a model_zoo.decoding decoder (default greedy); `max_length` defaults to the
  dataset config's feature lengths; `batch_size` is global and `max_decode_rows` bounds
  batch_size x the decoder's rows per example, a memory budget; `output_dir` defaults to
  MODEL_DIR/inference; `checkpoint_step` to the newest checkpoint. An existing output file
  is an error unless `overwrite`.
  """
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  decoder = decoder or sampling.greedy()
  _check_args(mode, dataset_cfg, batch_size, decoder, max_decode_rows)
  partitioner = partitioning.Partitioner()
  partitioner.check_batch_size(batch_size, "infer.batch_size")
  data.check_vocab_fits(dataset_cfg, model.vocab_size)
  converter = model.FEATURE_CONVERTER_CLS
  length = (
      converter.decode_length(dataset_cfg.task_feature_lengths)
      if max_length is None
      else max_length
  )
  audio = None if converter.token_prompts else data.audio_prompt
  codec = Codec.of_features(data.output_features(dataset_cfg), audio)
  prompt_length = dataset_cfg.task_feature_lengths.get("inputs")
  fit = functools.partial(
      infer_examples.fit_length,
      mode=mode,
      length=length,
      converter=converter,
      truncate=truncate_prompts,
      prompt_length=prompt_length,
  )
  examples, texts, total = _examples(
      data, model, mode, dataset_cfg, input_file, codec, fit, max_examples
  )
  output_dir = output_dir or os.path.join(model_dir, "inference")
  planned = infer_outputs.planned_step(model_dir, checkpoint_step)
  if planned is not None:  # else restoring fails, naming MODEL_DIR
    infer_outputs.check_output(
        os.path.join(output_dir, f"{mode}-{planned}.jsonl"), overwrite, create=False
    )
  shapes = {
      k: v.shape for k, v in model_batch(model, mode, [], batch_size, length, prompt_length).items()
  }
  state = restore.restore_state(
      Trainer(model=model, partitioner=partitioner), model_dir, shapes, checkpoint_step
  )
  step, params = int(jax.device_get(state.step)), state.params
  del state  # the optimizer state is not needed
  cli.say(
      f"Restored checkpoint step {step} of {model_dir}; mode {mode}, max_length {length}"
      + ("" if mode == "score" else f", decoder {decoder}")
  )
  path = os.path.join(output_dir, f"{mode}-{step}.jsonl")
  infer_outputs.check_output(
      path, overwrite, create=True
  )  # again: a damaged newest step falls back
  rows = batch_size // jax.process_count()
  width = max(length, *dataset_cfg.task_feature_lengths.values())
  batches = (
      (model_batch(model, mode, chunk, rows, length, prompt_length), _meta(chunk, rows, width))
      for chunk in _chunks(examples, rows)
  )
  decoder_params = controlled.decoder_params(decoder) if mode != "score" else None
  results = _run_batches(
      _model_fn(model, mode, decoder), params, decoder_params, partitioner, batches, seed
  )
  progress = metrics_writer.Progress("infer: {done}{of} examples", "examples", total, period_s=5)
  records = _collect(results, progress, mode, texts, codec, return_all_decodes)
  if jax.process_index() == 0:
    records = records[:max_examples]
    infer_outputs.write_jsonl(path, records)
    cli.say(infer_outputs.summary(records, mode, path))
  return path


def _collect(
    results: Iterable[tuple[dict, dict]],
    progress: metrics_writer.Progress,
    mode: str,
    texts: Optional[dict],
    codec: Codec,
    return_all_decodes: bool,
) -> list[dict]:
  """Process 0's JSON records of every batch in input order (other processes: none)."""
  records = []
  for outputs, meta in results:
    if jax.process_index() == 0:
      records += infer_outputs.records(mode, outputs, meta, texts, codec, return_all_decodes)
      # Processes may overshoot max_examples.
      progress.report(min(len(records), progress.total or len(records)))
  progress.report(min(len(records), progress.total or len(records)), final=True)
  return [record for _, record in sorted(records, key=lambda r: r[0])]


main, console_main = cli.entry_point(lambda: infer(), "infer")

if __name__ == "__main__":
  console_main()
