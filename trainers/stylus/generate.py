"""`python -m trainers.stylus.generate <the base run's flags> --gin_file=gin/runs/stylus.gin
--gin.STYLUS_CATALOG=DIR --gin.stylus_generate.prompts="['...']"`: Stylus for each prompt.

The adapters of the catalog (tools/build_adapter_catalog.py builds one, with its index) whose
refined descriptions are nearest the prompt are retrieved; the composer keeps, per keyword of
the prompt, those that raise the keyword's likelihood most; a mask of them (all kept ones, or
--gin.stylus_generate.num_masks sampled ones) is merged into the base model, each at its
keyword's weight divided among the keyword's adapters, and the merged model continues the
prompt greedily. Prints, per prompt, what was chosen and why and the output; writes every
record to `output_file` (default MODEL_DIR/inference/stylus.jsonl), all or nothing.
"""

import os
from typing import Any, Callable, Optional, Sequence

import gin
import jax
import numpy as np

from model_zoo.errors import ConfigError, MissingFileError
from trainers import cli, infer_examples, infer_outputs, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs read here bind)
from trainers.dataset_config import DatasetConfig
from trainers.infer_examples import Codec
from trainers.stylus import catalog, masks, select
from trainers.stylus.embedder import Embedder
from trainers.stylus.retriever import INDEX_FILE, AdapterIndex
from trainers.stylus.scoring import LikelihoodScore


class Stylus:
  """A base model with an adapter catalog: adapters chosen, masked and merged for a prompt."""

  def __init__(
      self,
      model,
      params: Any,
      catalog_dir: str,
      encode: Callable[[str], Sequence[int]],
      top_k: int = 8,
      per_keyword: int = 2,
      min_gain: float = 0.0,
  ):
    self.model, self.params = model, params
    self.entries, self.skipped = catalog.load_catalog(catalog_dir, params)
    if not self.entries:
      raise MissingFileError(
          f"the catalog {catalog_dir} has no adapter of this base model to choose from "
          f"(skipped: {self.skipped or 'none found'})"
      )
    self.index = AdapterIndex.load(os.path.join(catalog_dir, INDEX_FILE))
    self.embedder = Embedder(model, params, encode)
    self.score = LikelihoodScore(
        model, params, {n: (e.weights, e.scale) for n, e in self.entries.items()}, encode
    )
    self.top_k, self.per_keyword, self.min_gain = top_k, per_keyword, min_gain
    self._predict = jax.jit(model.predict_batch)
    self._score = jax.jit(model.score_batch)

  def choose(self, prompt: str) -> select.Choice:
    return select.choose(
        prompt,
        self.index,
        self.embedder.embed,
        self.embedder.name,
        self.entries,
        self.score,
        self.top_k,
        self.per_keyword,
        self.min_gain,
    )

  def params_for(self, mask: masks.Mask, keyword_weights: Optional[dict[str, float]] = None) -> Any:
    """The base parameters with the mask's adapters merged (select.merged_for_mask)."""
    return select.merged_for_mask(self.params, mask, self.entries, keyword_weights)

  def continue_prompt(self, params: Any, prompt_ids: Sequence[int], length: int):
    """(generated ids up to EOS, their log-probability) of the greedy continuation."""
    batch = self.model.prompt_batch([list(prompt_ids)], 1, length)
    ids, score = jax.device_get(self._predict(params, batch))
    return [int(t) for t in np.asarray(ids)[0]], float(np.asarray(score)[0])

  def log_likelihood(
      self, params: Any, prompt_ids: Sequence[int], target_ids: Sequence[int], length: int
  ) -> float:
    """log p(target | prompt) in nats under `params`."""
    batch = self.model.scoring_batch([list(prompt_ids)], [list(target_ids)], 1, length)
    return float(np.asarray(jax.device_get(self._score(params, batch)))[0])


def prompt_masks(choice: select.Choice, num_masks: int, seed: int) -> list[masks.Mask]:
  """The mask of every kept adapter (num_masks 0), or `num_masks` sampled ones."""
  assignment = choice.composition.assignment
  if num_masks < 0:
    raise ConfigError(f"stylus_generate.num_masks must be >= 0; got {num_masks}")
  if num_masks == 0:
    return [{k: tuple(v) for k, v in assignment.items()}]
  return masks.sample_masks(assignment, num_masks, seed)


def _prompts(prompts: Sequence[str], input_file: Optional[str]) -> list[tuple[str, Optional[str]]]:
  if bool(prompts) == bool(input_file):
    raise ConfigError(
        "give the prompts either as --gin.stylus_generate.prompts=\"['...']\" or in "
        '--gin.stylus_generate.input_file (one per line, or .jsonl with "input"), not both'
    )
  if input_file:
    return [(p, t) for p, t, _ in infer_examples.read_input_file(input_file, "predict")]
  return [(str(p), None) for p in prompts]


@gin.configurable
def stylus_generate(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    catalog_dir: str = gin.REQUIRED,
    dataset_cfg: DatasetConfig = gin.REQUIRED,
    prompts: Sequence[str] = (),
    input_file: Optional[str] = None,
    top_k: int = 8,
    per_keyword: int = 2,
    min_gain: float = 0.0,
    num_masks: int = 0,
    seed: int = 0,
    max_length: Optional[int] = None,
    output_file: Optional[str] = None,
    overwrite: bool = False,
) -> str:
  """Chooses adapters for each prompt and continues it (module docstring); returns the file
  written. `dataset_cfg` names the task whose vocabulary encodes prompts as its inputs."""
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  items = _prompts(prompts, input_file)
  output_file = output_file or os.path.join(model_dir, "inference", "stylus.jsonl")
  if os.path.exists(output_file) and not overwrite:
    raise ConfigError(
        f"{output_file} already exists; pass --gin.stylus_generate.overwrite=True to replace "
        "it, or --gin.stylus_generate.output_file=... to write elsewhere"
    )
  codec = Codec.of_features(data.output_features(dataset_cfg))
  length = max_length or model.FEATURE_CONVERTER_CLS.decode_length(dataset_cfg.task_feature_lengths)
  step, params = restore.restore_params(model, model_dir)
  stylus = Stylus(
      model, params, catalog_dir, codec.prompt_vocab.encode, top_k, per_keyword, min_gain
  )
  cli.say(
      f"Base model: step {step} of {model_dir}; {len(stylus.entries)} adapters in {catalog_dir}"
  )
  for name, why in stylus.skipped.items():
    cli.say(f"  skipped {name}: {why}")
  records = []
  for prompt, target in items:
    choice = stylus.choose(prompt)
    cli.say(f"\nPrompt: {prompt}\n  " + "\n  ".join(choice.why()))
    for mask in prompt_masks(choice, num_masks, seed):
      ids, score = stylus.continue_prompt(
          stylus.params_for(mask), codec.encode_prompt(prompt), length
      )
      output = codec.decode_target(ids)
      weights = masks.merge_weights(mask)
      shown = ", ".join(f"{a} x{w:.2f}" for a, w in weights.items()) or "none: the base model"
      cli.say(f"  adapters {shown}\n  -> {output}")
      records.append(
          {
              "input": prompt,
              **({"target": target} if target is not None else {}),
              "keywords": choice.keywords,
              "retrieved": choice.retrieved,
              "why": choice.why(),
              "mask": {k: list(v) for k, v in mask.items()},
              "weights": weights,
              "output": output,
              "score": score,
          }
      )
  if jax.process_index() == 0:
    infer_outputs.write_jsonl(output_file, records)
  cli.say(f"\nWrote {len(records)} records to {output_file}")
  return output_file


main, console_main = cli.entry_point(lambda: stylus_generate(), "stylus.generate")

if __name__ == "__main__":
  console_main()
