"""`python -m trainers.stylus.generate`: for each prompt, the chosen adapters (with why) merged
into the base checkpoint's model, and its continuation, which equals greedy decoding of the
base with the record's adapters added in NumPy; a damaged catalog entry is skipped; a user's
mistakes stop the run with a message, and an earlier output is never replaced unasked."""

import json

import jax
import numpy as np
import pytest
import seqio
from flax.core import meta

from model_zoo.layers import lora
from tasks import quickstart
from tests.trainers.test_cli import quick_flags, run_cli, saved_state
from tools import benchmark_common
from trainers import adapters
from trainers.stylus import generate, refiner
from trainers.stylus.embedder import Embedder
from trainers.stylus.retriever import INDEX_FILE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CONFIG = lora.LoraConfig(rank=2, alpha=4.0)  # the attention projections
PROMPT = "In the beginning God created the heaven, and the earth was without form"
_configured_model = benchmark_common.model_configurable("test_stylus_generate")


def _catalog(tmp_path, model, base):
  """Two adapters with random A and B on the base, a damaged entry, and the index."""
  tokens = np.ones((1, 8), np.int32)
  boxed = model.init(
      jax.random.PRNGKey(0), {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  )
  catalog_dir = tmp_path / "catalog"
  rng = np.random.default_rng(0)
  for seed, name in enumerate(("creation", "flood")):
    fresh = lora.split_adapters(lora.init_adapters(jax.random.PRNGKey(seed), boxed, CONFIG))[1]
    ad = jax.tree.map(
        lambda x: rng.normal(size=x.shape).astype(np.float32) * 0.5, meta.unbox(fresh)
    )
    card = adapters.card_for(lora.join_adapters(base, ad), CONFIG, description=f"the {name}")
    adapters.save(str(catalog_dir / name), ad, card)
  (catalog_dir / "damaged").mkdir()
  (catalog_dir / "damaged" / "card.json").write_text("{")
  cards = {n: adapters.read_card(str(catalog_dir / n)) for n in ("creation", "flood")}
  embedder = Embedder(model, base, lambda t: [3 + ord(c) % 50 for c in t])
  index = refiner.build_index(cards, lambda c: c["description"], embedder.embed, embedder.name)
  index.save(str(catalog_dir / INDEX_FILE))
  return catalog_dir


def _numpy_merged(base, catalog_dir, weights):
  """The base kernels plus sum_i w_i (alpha / rank) A_i B_i, in NumPy."""
  flat = {p: np.asarray(x, np.float64) for p, x in lora.flat_params(base).items()}
  for name, weight in weights.items():
    ad, card = adapters.load(str(catalog_dir / name))
    pieces = lora.flat_params(ad)
    for a_path in (p for p in pieces if p.endswith("/lora_a")):
      parent = a_path.rsplit("/", 1)[0]
      a, b = np.asarray(pieces[a_path], np.float64), np.asarray(pieces[f"{parent}/lora_b"])
      kernel = flat[f"{parent}/kernel"]
      layers, rank = a.shape[0], a.shape[-1]  # scanned layers: A [L, in, r], B [L, r, out...]
      delta = a.reshape(layers, -1, rank) @ b.reshape(layers, rank, -1)
      flat[f"{parent}/kernel"] = kernel + weight * card["alpha"] / card["rank"] * delta.reshape(
          kernel.shape
      )
  return lora.nested_params({p: x.astype(np.float32) for p, x in flat.items()})


@pytest.mark.slow
def test_stylus_generate_chooses_merges_and_continues_each_prompt(tmp_path, capfd):
  base_dir = tmp_path / "base"
  code, log = run_cli(capfd, *quick_flags(base_dir, 2))
  assert code == 0, log
  model = benchmark_common.load_model(
      ["gin/runs/quickstart.gin"],
      "",
      [f"MODEL_DIR = '{base_dir}'"],
      _configured_model,
      "test_stylus_generate",
  )
  base = saved_state(base_dir, 2)["params"]
  catalog_dir = _catalog(tmp_path, model, base)
  flags = quick_flags(base_dir, 2) + [
      "--gin_file=gin/runs/stylus.gin",
      f"--gin.STYLUS_CATALOG='{catalog_dir}'",
      f"--gin.stylus_generate.prompts=['{PROMPT}']",
      "--gin.stylus_generate.per_keyword=1",
      "--gin.stylus_generate.min_gain=-100.0",  # random adapters: keep the best for each keyword
      "--gin.stylus_generate.max_length=24",
  ]
  code = generate.main(flags)
  log = "".join(capfd.readouterr())
  assert code == 0, log
  assert "2 adapters in" in log and "skipped damaged: " in log
  output = base_dir / "inference" / "stylus.jsonl"
  (record,) = [json.loads(line) for line in output.read_text().splitlines()]
  keywords = ["In the beginning God created the heaven", "the earth was without form"]
  assert record["keywords"] == keywords and record["input"] == PROMPT
  assert set(record["mask"]) == set(keywords)
  assert all(len(kept) == 1 for kept in record["mask"].values())
  expected_weights = {}
  for kept in record["mask"].values():
    expected_weights[kept[0]] = expected_weights.get(kept[0], 0.0) + 1.0
  assert record["weights"] == pytest.approx(expected_weights)
  assert any(line.startswith(f"'{keywords[0]}': ") for line in record["why"])
  assert record["output"] in log

  # The continuation: greedy decoding of the base with the adapters added in NumPy.
  vocab = seqio.get_mixture_or_task(quickstart.TASK_NAME).output_features["targets"].vocabulary
  merged = _numpy_merged(base, catalog_dir, record["weights"])
  batch = model.prompt_batch([list(vocab.encode(PROMPT))], 1, 24)
  ids, _ = model.predict_batch(merged, batch)
  expected = vocab.decode([int(t) for t in np.asarray(ids)[0] if t > 1])
  assert record["output"] == expected

  # An earlier output is never replaced unasked; prompts come from one place only.
  code = generate.main(flags)
  log = "".join(capfd.readouterr())
  assert code == 1 and "already exists" in log and "Traceback" not in log
  prompts_file = tmp_path / "prompts.jsonl"
  prompts_file.write_text(json.dumps({"input": PROMPT, "target": "darkness"}) + "\n")
  code = generate.main(flags + [f"--gin.stylus_generate.input_file='{prompts_file}'"])
  log = "".join(capfd.readouterr())
  assert code == 1 and "not both" in log and "Traceback" not in log
  code = generate.main(
      flags
      + [
          "--gin.stylus_generate.prompts=[]",
          f"--gin.stylus_generate.input_file='{prompts_file}'",
          "--gin.stylus_generate.overwrite=True",
          "--gin.stylus_generate.num_masks=3",
      ]
  )
  log = "".join(capfd.readouterr())
  assert code == 0, log
  records = [json.loads(line) for line in output.read_text().splitlines()]
  assert len(records) == 3 and all(r["target"] == "darkness" for r in records)
  for r in records:  # each keyword: its adapter or none
    assert all(kept in ([], record["mask"][k]) for k, kept in r["mask"].items())
