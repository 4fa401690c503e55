"""`python -m trainers.spae_lm <the SPAE run's flags> --gin_file=gin/runs/spae_lm.gin
--gin_file=gin/models/spae_frozen_lm_tiny.gin --gin.LM_DIR=DIR ...`: a frozen LM reads and
writes images as SPAE tokens of its own vocabulary.

The LM (gin/models/spae_frozen_lm_*.gin, restored from LM_DIR) must be the one whose
input embeddings are the SPAE model's codebook: checked, since another LM's ids would mean
other things. Each part runs when its setting is given:
- `spae_lm.images=['a.png']`: each image's tokens, layer by layer, shown as the LM's
  pieces, and its reconstruction from every pyramid depth (one PNG row per image).
- `spae_lm.classify_examples=N`: few-shot classification of the first N examples of the
  eval split (the mixture's validation task): `shots_per_class` solved examples of every
  word of the train split ("image tokens : word ;") then the query ("image tokens :"); the
  LM's answer is the word it finds most likely, and calibrated, the word whose likelihood
  the image raises most over the same prompt without one. Reported beside the majority
  class.
- `spae_lm.generate_words=['seven']`: few-shot generation: the same shots the other way
  round ("word : image tokens ;"), then "word :"; the LM writes image tokens (codebook ids
  only) that SPAE decodes, one PNG row per word (`num_samples` each).
Images enter the prompt as their first `context_depth` pyramid layers (by default layer 1
alone, the one token the semantic loss makes a piece of the image's word). Writes
OUTPUT_DIR/spae_lm.json (default MODEL_DIR/spae_lm/) and the PNGs there.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Optional, Sequence

import gin
import jax
import numpy as np

from model_zoo.decoding import sampling
from model_zoo.errors import ConfigError
from model_zoo.spae import in_context
from model_zoo.spae.model import SpaeModel
from trainers import cli, image_files, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs read here bind)
from trainers.dataset_config import DatasetConfig

Example = tuple[np.ndarray, tuple[int, ...]]  # (image [side, side, 3], its word's LM ids)


@dataclasses.dataclass
class SpaeWithLm:
  """A SPAE model and the frozen LM whose embeddings are its codebook."""

  spae: SpaeModel
  spae_params: Any
  lm: Any
  lm_params: Any
  encode_text: Callable[[str], list[int]]
  context_depth: int = 1
  marker: str = ":"
  separator: str = ";"

  def __post_init__(self):
    cfg = self.spae.config
    if self.lm.vocab_size != cfg.vocab_size:
      raise ConfigError(
          f"The LM has a vocabulary of {self.lm.vocab_size} ids but the SPAE model's codebook "
          f"comes from one of {cfg.vocab_size} (SpaeConfig.vocab_size): use the LM whose "
          "checkpoint the SPAE run read (its INITIAL_CHECKPOINT_PATH)."
      )
    table = self.lm_params.get("token_embedder", {}).get("embedding")
    codebook = self.spae_params["codebook"]["embedding"]
    if table is None or not np.array_equal(jax.device_get(table), jax.device_get(codebook)):
      raise ConfigError(
          "The LM's input embeddings are not the SPAE model's codebook: its ids would mean "
          "other things. Use the LM run the SPAE run read its codebook from (its "
          "INITIAL_CHECKPOINT_PATH) as LM_DIR."
      )
    if not 1 <= self.context_depth <= self.spae.pyramid.num_layers:
      raise ConfigError(
          f"spae_lm.context_depth={self.context_depth} must be 1..{self.spae.pyramid.num_layers} "
          "(the pyramid's layers)."
      )
    self.num_image_tokens = sum(cfg.layer_tokens[: self.context_depth])
    self._marker = self.encode_text(self.marker)
    self._separator = self.encode_text(self.separator)
    self._encode = jax.jit(self.spae.encode)
    self._decode = jax.jit(self.spae.decode)
    self._reconstruct = jax.jit(self.spae.reconstruct)

  def tokens(self, images: np.ndarray) -> np.ndarray:
    """[n, num_tokens]: every pyramid layer's tokens of each image (LM ids)."""
    return np.asarray(self._encode(self.spae_params, images))

  def image_ids(self, images: np.ndarray) -> np.ndarray:
    """[n, num_image_tokens]: the images' first `context_depth` layers of tokens."""
    return self.tokens(images)[:, : self.num_image_tokens]

  def reconstructions(self, images: np.ndarray) -> np.ndarray:
    """[depths, n, side, side, channels]: each image from every pyramid prefix."""
    return np.asarray(self._reconstruct(self.spae_params, images))

  def classify(
      self, shots: Sequence[Example], queries: np.ndarray, candidates: Sequence[tuple[int, ...]]
  ) -> tuple[np.ndarray, np.ndarray]:
    """(log p(candidate word | shots, query image) [queries, candidates], the same without a
    query image [candidates]: the LM's prior over the words in this context, which
    contextual calibration (Zhao et al. 2021) subtracts so that a word it favours whatever
    the image is not everyone's answer)."""
    shot_ids = self.image_ids(np.stack([image for image, _ in shots]))
    context = [(ids, word) for ids, (_, word) in zip(shot_ids, shots)]
    prompts = [
        in_context.few_shot_prompt(context, query, self._marker, self._separator)
        for query in [*self.image_ids(queries), []]  # the last: no image
    ]
    scores = in_context.rank_classify(self.lm, self.lm_params, prompts, candidates)
    return scores[:-1], scores[-1]

  def generate(
      self, shots: Sequence[Example], words: Sequence[Sequence[int]], decoder, rng: jax.Array
  ) -> np.ndarray:
    """Images [len(words), side, side, channels] decoded from the tokens the LM writes after
    "shot word : shot image ;" ... "word :"."""
    shot_ids = self.image_ids(np.stack([image for image, _ in shots]))
    context = [(word, ids) for ids, (_, word) in zip(shot_ids, shots)]
    prompts = [
        in_context.few_shot_prompt(context, word, self._marker, self._separator) for word in words
    ]
    cfg = self.spae.config
    ids = in_context.generate_image_tokens(
        self.lm,
        self.lm_params,
        prompts,
        self.num_image_tokens,
        (cfg.first_code_id, cfg.code_stop),
        decoder,
        rng,
    )
    return np.asarray(self._decode(self.spae_params, ids))


def read_examples(
    cfg: DatasetConfig, converter, count: Optional[int], max_batches: int = 1000
) -> list[Example]:
  """The first `count` (image, word ids) examples of `cfg`'s split (all of a finite one when
  None), through the data seam."""
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  examples: list[Example] = []
  for batch in data.take(data.batches(cfg, converter), max_batches):
    for image, tokens in zip(batch["image"], batch["semantic_tokens"]):
      examples.append((np.asarray(image), tuple(int(t) for t in tokens if t > 0)))
      if count is not None and len(examples) == count:
        return examples
  return examples


def shots_per_word(examples: Sequence[Example], per_word: int, seed: int) -> list[Example]:
  """`per_word` examples of every word in `examples`, shuffled with `seed`; a word with fewer
  examples is an error (the few-shot prompt would miss it)."""
  by_word: dict[tuple[int, ...], list[Example]] = {}
  for example in examples:
    by_word.setdefault(example[1], []).append(example)
  short = {w: len(e) for w, e in by_word.items() if len(e) < per_word}
  if short:
    raise ConfigError(
        f"{len(short)} words have fewer than spae_lm.shots_per_class={per_word} train examples "
        "in the examples read; lower shots_per_class or read more (spae_lm.shot_pool)."
    )
  chosen = [e for examples_of in by_word.values() for e in examples_of[:per_word]]
  order = np.random.default_rng(seed).permutation(len(chosen))
  return [chosen[i] for i in order]


@gin.configurable
def spae_lm(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    lm=gin.REQUIRED,
    lm_dir: str = gin.REQUIRED,
    train_cfg: DatasetConfig = gin.REQUIRED,
    eval_cfg: DatasetConfig = gin.REQUIRED,
    images: Sequence[str] = (),
    classify_examples: int = 0,
    generate_words: Sequence[str] = (),
    shots_per_class: int = 1,
    shot_pool: int = 512,
    context_depth: int = 1,
    marker: str = ":",
    separator: str = ";",
    decoder: Any = None,
    num_samples: int = 4,
    seed: int = 0,
    output_dir: Optional[str] = None,
) -> dict:
  """Runs the parts whose settings are given (module docstring); returns the JSON written."""
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  if not (images or classify_examples or generate_words):
    raise ConfigError(
        "spae_lm has nothing to do: give --gin.spae_lm.images=['a.png'], "
        "--gin.spae_lm.classify_examples=N or --gin.spae_lm.generate_words=['...']."
    )
  output_dir = output_dir or os.path.join(model_dir, "spae_lm")
  cfg = model.config
  side = cfg.image_side
  pixels = [image_files.read_image(p, side, cfg.image_channels) for p in images]  # fail early
  vocabulary = data.vocabulary(eval_cfg)
  data.check_vocab_fits(eval_cfg, lm.vocab_size)
  image_shape = {"image": (side, side, cfg.image_channels)}
  spae_step, spae_params = restore.restore_params(model, model_dir, row_shapes=image_shape)
  lm_step, lm_params = restore.restore_params(lm, lm_dir)
  cli.say(f"SPAE: step {spae_step} of {model_dir}; LM: step {lm_step} of {lm_dir}")
  both = SpaeWithLm(
      model, spae_params, lm, lm_params, vocabulary.encode, context_depth, marker, separator
  )
  converter = model.FEATURE_CONVERTER_CLS
  report: dict[str, Any] = {"spae_step": spae_step, "lm_step": lm_step}
  if images:
    report["images"] = _encode_images(both, images, np.stack(pixels), vocabulary, output_dir)
  shots = []
  if classify_examples or generate_words:
    pool = read_examples(train_cfg, converter, shot_pool)
    shots = shots_per_word(pool, shots_per_class, seed)
    cli.say(
        f"{len(shots)} shots: {shots_per_class} of each of {len(shots) // shots_per_class} words"
    )
  if classify_examples:
    report["classify"] = _classify(
        both, shots, read_examples(eval_cfg, converter, classify_examples), vocabulary
    )
  if generate_words:
    report["generate"] = _generate(
        both, shots, generate_words, vocabulary, decoder, num_samples, seed, output_dir
    )
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "spae_lm.json")
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(report, f, ensure_ascii=False, indent=1)
  os.replace(path + ".tmp", path)
  cli.say(f"Wrote {path}")
  return report


def _encode_images(both: SpaeWithLm, paths, pixels, vocabulary, output_dir) -> list[dict]:
  ids = both.tokens(pixels)
  offsets = both.spae.pyramid.offsets() + [both.spae.pyramid.num_tokens]
  records = []
  for path, row in zip(paths, ids):
    layers = [row[a:b].tolist() for a, b in zip(offsets, offsets[1:])]
    pieces = [[vocabulary.decode([t]) for t in layer] for layer in layers]
    cli.say(
        f"{path}:\n" + "\n".join(f"  layer {i + 1}: {' '.join(p)}" for i, p in enumerate(pieces))
    )
    records.append({"image": path, "tokens": layers, "pieces": pieces})
  rows = [
      [image, *depths] for image, depths in zip(pixels, both.reconstructions(pixels).swapaxes(0, 1))
  ]
  image_files.write_grid(os.path.join(output_dir, "reconstructions.png"), rows)
  return records


def _classify(both: SpaeWithLm, shots, queries, vocabulary) -> dict:
  candidates = sorted({word for _, word in shots})
  scores, prior = both.classify(shots, np.stack([image for image, _ in queries]), candidates)
  truth = [word for _, word in queries]

  def accuracy(table: np.ndarray) -> float:
    answers = [candidates[i] for i in np.argmax(table, axis=1)]
    return float(np.mean([a == t for a, t in zip(answers, truth)]))

  raw, calibrated = accuracy(scores), accuracy(scores - prior)
  majority = max(truth.count(w) for w in set(truth)) / len(truth)
  cli.say(
      f"few-shot classification of {len(truth)} images over {len(candidates)} words: "
      f"accuracy {raw:.3f}, calibrated {calibrated:.3f}, majority class {majority:.3f}"
  )
  return {
      "examples": len(truth),
      "words": [vocabulary.decode(list(w)) for w in candidates],
      "accuracy": raw,
      "calibrated_accuracy": calibrated,
      "majority_class": majority,
  }


def _generate(both, shots, words, vocabulary, decoder, num_samples, seed, output_dir) -> dict:
  decoder = decoder or sampling.Sampling(temperature=1.0, top_k=40)
  rows = []
  for i, word in enumerate(words):
    ids = vocabulary.encode(word)
    generated = both.generate(
        shots, [ids] * num_samples, decoder, jax.random.fold_in(jax.random.PRNGKey(seed), i)
    )
    rows.append(list(generated))
  path = os.path.join(output_dir, "generated.png")
  image_files.write_grid(path, rows)
  cli.say(f"Generated {num_samples} images for each of {len(words)} words: {path}")
  return {"words": list(words), "samples": num_samples, "grid": path}


main, console_main = cli.entry_point(lambda: spae_lm(), "spae_lm")

if __name__ == "__main__":
  console_main()
