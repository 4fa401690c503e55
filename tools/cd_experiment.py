"""Experiment: controlled decoding's reward against KL(pi || p_base), beside best-of-K and PaLM 2
control tokens, on podzoo's multilingual corpus.

  python -m tools.cd_experiment [--base_steps 1000] [--scorer_steps 300] [--rollout_prompts 256]
      [--eval_prompts 256] [--lambdas 0.25 0.5 1 2] [--blockwise_k 2 4 8 16] [--block_length 4]
      [--best_of_k 2 4 8 16 32 64] [--max_new_tokens 24] [--out_dir DIR] [--base_dir DIR]
      [--json_out cd_experiment.json] [--plot cd_experiment.png]

Every model is trained and every rollout sampled by the real command lines:
  1. the base LM: decoder_only_tiny on `controlled_lm` (en, de, fr, es texts; half of them
     behind PaLM 2 control tokens `<lang:X><len:Y>`) by `python -m trainers.train`;
  2. rollouts: `python -m trainers.infer` samples --rollout_prompts x 8 continuations of the
     empty prompt (the base model's unconditional distribution);
  3. `python -m tools.score_rollouts` gives each its rewards: `langid:de` (log P(German) by
     podzoo's LangID model) and `length` (log(T / T_max));
  4. prefix scorers, trunks started from the base LM: CD-Q for each reward and CD-FUDGE for
     `langid:de` (gin/runs/prefix_scorer{_cd_q}.gin, on rollout tasks a module written to
     --out_dir registers, as a user's task module would).
Then the decoders run in this process on --eval_prompts held-out empty prompts (the
restored checkpoints; fresh seeds), so every sample's token ids are at hand for its exact
log p_base(y) (Model.score_batch):
  * token-wise CD (CD-Q and CD-FUDGE) for each lambda: KL = mean(log pi(y) - log p_base(y));
  * blockwise CD-Q for each K (blocks of --block_length): the paper's bound
    (log K - (K-1)/K) x mean blocks;
  * best-of-K from K base samples per prompt: the bound log K - (K-1)/K and the estimate
    mean(log K + (K-1) log F(r(y))), F the reward's CDF over base samples (exact for
    best-of-K when rewards do not tie);
  * control tokens: the prompt `<lang:de>`: KL = mean(log p(y | ctrl) - log p(y | empty));
  * multi-objective: token-wise CD with both CD-Q scorers, and the prompt `<lang:de><len:long>`.
Writes a JSON of every figure, a PNG (German reward against KL, by method) and a table. The
paper's headline to compare with: blockwise CD-Q at K ~ 6 reaches best-of-K's reward-vs-KL
at K ~ 50.
"""

import argparse
import functools
import json
import math
import os
import sys
import tempfile
from typing import Any, Optional, Sequence

import gin
import jax
import numpy as np

from model_zoo import dense, models, prefix_scorer
from model_zoo.config import TransformerConfig
from model_zoo.decoding import controlled, sampling
from model_zoo.errors import UserError
from tasks.controlled import control_tokens, rewards
from tools import benchmark_common, moe_experiment, score_rollouts
from trainers import cli, controlled_decoding, infer, partitioning, restore
from trainers.trainer import Trainer

TITLE = "Controlled decoding: P(German) against KL from the base model"
MODEL_GIN = "gin/models/decoder_only_tiny.gin"
RUN_GINS = (MODEL_GIN, "gin/runs/pretrain.gin", "gin/runs/short_run.gin")
VOCAB_SIZE = 8192  # the control vocabulary's
REWARDS = ("langid:de", "length")
MAIN_REWARD = "langid:de"
ROLLOUTS_PER_PROMPT = 8
SCORERS = {  # name -> (reward, objective)
    "cd_q_de": ("langid:de", "cd_q"),
    "cd_fudge_de": ("langid:de", "cd_fudge"),
    "cd_q_length": ("length", "cd_q"),
}
TASK_MODULE = "cd_experiment_rollouts"  # written to --out_dir, imported by the scorer runs


def _bindings(task: str, module: str, lengths: dict[str, int]) -> list[str]:
  return [
      f"MIXTURE_OR_TASK_MODULE = '{module}'",
      f"MIXTURE_OR_TASK_NAME = '{task}'",
      f"TASK_FEATURE_LENGTHS = {lengths}",
      f"TransformerConfig.vocab_size = {VOCAB_SIZE}",
  ]


def train_base(args, out_dir: str) -> str:
  model_dir = os.path.join(out_dir, "base")
  run_args = argparse.Namespace(
      steps=args.base_steps, batch_size=32, eval_period=args.base_steps, eval_steps=5
  )
  bindings = _bindings(control_tokens.TASK_NAME, "tasks.controlled.control_tokens", {"targets": 32})
  moe_experiment.train("base LM", RUN_GINS, bindings, run_args, model_dir)
  return model_dir


def sample_rollouts(args, base_dir: str, out_dir: str) -> str:
  """Rollouts of the empty prompt through trainers.infer, scored by tools.score_rollouts."""
  prompts = os.path.join(out_dir, "rollout_prompts.jsonl")
  with open(prompts, "w", encoding="utf-8") as f:
    f.writelines(json.dumps({"input": ""}) + "\n" for _ in range(args.rollout_prompts))
  predictions = os.path.join(out_dir, "rollouts_predictions.jsonl")
  flags = [f"--gin_file={f}" for f in (*RUN_GINS, "gin/runs/infer.gin")] + [
      f"--gin.{b.replace(' = ', '=')}"
      for b in _bindings(control_tokens.TASK_NAME, "tasks.controlled.control_tokens", {})
  ]
  flags += [
      f"--gin.MODEL_DIR='{base_dir}'",
      f"--gin.TRAIN_STEPS={args.base_steps}",  # the training run's flags, as infer.gin asks
      "--gin.TASK_FEATURE_LENGTHS={'targets': 32}",
      "--gin.BATCH_SIZE=64",
      f"--gin.infer.input_file='{prompts}'",
      f"--gin.infer.max_length={args.max_new_tokens}",
      "--gin.infer.decoder=@Sampling()",
      f"--gin.Sampling.num_decodes={ROLLOUTS_PER_PROMPT}",
      "--gin.infer.return_all_decodes=True",
      f"--gin.infer.output_dir='{out_dir}'",
      "--gin.infer.overwrite=True",
  ]
  print(f"== rollouts: python -m trainers.infer {' '.join(flags)}", flush=True)
  written = infer.main(flags)
  if written:
    raise UserError(f"Sampling the rollouts failed (exit {written}); its log is above.")
  (path,) = [p for p in os.listdir(out_dir) if p.startswith("predict-")]
  os.replace(os.path.join(out_dir, path), predictions)
  rollouts = os.path.join(out_dir, "rollouts.jsonl")
  code = score_rollouts.main(
      [
          f"--predictions={predictions}",
          f"--rewards={','.join(REWARDS)}",
          f"--task={control_tokens.TASK_NAME}",
          "--module=tasks.controlled.control_tokens",
          f"--max_new_tokens={args.max_new_tokens}",
          f"--output={rollouts}",
          "--overwrite",
      ]
  )
  if code:
    raise UserError(f"Scoring the rollouts failed (exit {code}); its log is above.")
  return rollouts


def write_task_module(out_dir: str, rollouts: str) -> None:
  """A user's task module: one rollout task per reward, over the scored rollouts."""
  lines = [
      '"""Rollout tasks of tools/cd_experiment.py (written by it)."""',
      "from tasks.controlled import control_tokens, rollouts",
      "",
      "VOCABULARY = control_tokens.control_vocabulary()",
  ]
  lines += [
      f"rollouts.register_rollout_task({_task(reward)!r}, {rollouts!r}, {reward!r}, VOCABULARY)"
      for reward in REWARDS
  ]
  with open(os.path.join(out_dir, f"{TASK_MODULE}.py"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def _task(reward: str) -> str:
  return "rollouts_" + reward.replace(":", "_")


def train_scorer(args, name: str, base_dir: str, out_dir: str) -> str:
  reward, objective = SCORERS[name]
  model_dir = os.path.join(out_dir, name)
  run_args = argparse.Namespace(
      steps=args.scorer_steps, batch_size=32, eval_period=args.scorer_steps, eval_steps=1
  )
  gin_files = ["gin/runs/prefix_scorer.gin"]
  if objective == "cd_q":
    gin_files.append("gin/runs/prefix_scorer_cd_q.gin")
  bindings = _bindings(_task(reward), TASK_MODULE, {"inputs": 4, "targets": args.max_new_tokens})
  bindings.append(f"INITIAL_CHECKPOINT_PATH = '{base_dir}'")
  os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [out_dir, os.environ.get("PYTHONPATH")]))
  moe_experiment.train(name, (*RUN_GINS, *gin_files), bindings, run_args, model_dir)
  return model_dir


# --- evaluation in this process ---------------------------------------------------------------
class Evaluator:
  """The base model and its scorers restored, the held-out prompts, and the measurements."""

  def __init__(self, args, base_dir: str, scorer_dirs: dict[str, str]):
    # The base run's config: the model's dims, and the Trainer that restoring builds.
    gin.clear_config()
    cli.import_configurables()
    bindings = _bindings(control_tokens.TASK_NAME, "tasks.controlled.control_tokens", {})
    bindings += [f"MODEL_DIR = '{base_dir}'", f"TRAIN_STEPS = {args.base_steps}"]
    gin.parse_config_files_and_bindings(list(RUN_GINS), bindings)
    config = TransformerConfig()
    self.model = models.DecoderOnlyModel(dense.DecoderOnlyLM(config))
    self.length = args.max_new_tokens
    shapes = {k: v.shape for k, v in self.model.prompt_batch([], 1, self.length).items()}
    trainer = Trainer(model=self.model, partitioner=partitioning.Partitioner())
    self.params = restore.restore_state(trainer, base_dir, shapes).params
    self.scorers = {
        name: controlled_decoding.restored_prefix_scorer(
            model=prefix_scorer.PrefixScorerModel(
                prefix_scorer.PrefixScorerLM(config), objective=SCORERS[name][1]
            ),
            model_dir=path,
        )
        for name, path in scorer_dirs.items()
    }
    gin.clear_config()
    self.vocabulary = control_tokens.control_vocabulary()
    self.prompts = args.eval_prompts
    self.rewards = {name: rewards.get(name) for name in REWARDS}
    self.batch_rows = 4096

  def _prompt_ids(self, text: str) -> list[int]:
    return [int(t) for t in self.vocabulary.encode(text)] if text else []

  def sample(self, decoder, prompt: str = "", seed: int = 1):
    """[prompts, rows per prompt, L] ids and [prompts, rows] scores of `decoder`."""
    per_example = decoder.rows_per_example
    chunk = max(self.batch_rows // per_example, 1)
    scorer_params = controlled.decoder_params(decoder)
    fn = _predict_fn(self.model, decoder)
    ids, scores = [], []
    for start in range(0, self.prompts, chunk):
      rows = min(chunk, self.prompts - start)
      batch = self.model.prompt_batch([self._prompt_ids(prompt)] * rows, rows, self.length)
      out = fn(self.params, scorer_params, batch, jax.random.PRNGKey(seed * 1000 + start))
      ids.append(np.asarray(out[0]))
      scores.append(np.asarray(out[1]))
    return np.concatenate(ids), np.concatenate(scores)

  def base_log_probs(self, ids: np.ndarray, prompt: str = "") -> np.ndarray:
    """log p_base(y | prompt) of each row of ids [N, L] (up to its EOS, included)."""
    targets = [_generated(row, self.model.eos_id) for row in ids]
    prompt_ids = self._prompt_ids(prompt)
    out = []
    for start in range(0, len(targets), 1024):
      part = targets[start : start + 1024]
      batch = self.model.scoring_batch(
          [prompt_ids] * len(part), part, len(part), len(prompt_ids) + self.length
      )
      out.append(np.asarray(_score_fn(self.model)(self.params, batch)))
    return np.concatenate(out)

  def reward(self, name: str, ids: np.ndarray) -> np.ndarray:
    rows = rewards.rollouts_from_tokens(
        self.vocabulary, ids, self.model.eos_id, np.full(len(ids), self.length)
    )
    return self.rewards[name](rows)


def _generated(row: np.ndarray, eos_id: int) -> list[int]:
  ends = np.flatnonzero(row == eos_id)
  return [int(t) for t in (row[: ends[0] + 1] if len(ends) else row[row > 0])]


@functools.lru_cache(maxsize=None)
def _score_fn(model):
  return jax.jit(model.score_batch)


def _predict_fn(model, decoder):
  def run(params, scorer_params, batch, rng):
    decoder_here = controlled.with_decoder_params(decoder, scorer_params)
    return model.predict_batch(params, batch, rng, decoder=decoder_here, return_all_decodes=True)

  return jax.jit(run)


def best_of_k_bound(k: int) -> float:
  return math.log(k) - (k - 1) / k


def best_of_k(pool_rewards: np.ndarray, subsets: np.ndarray) -> tuple[np.ndarray, float]:
  """(index of the best of each prompt's K samples `subsets` [P, K], the KL estimate).

  For best-of-K of iid samples whose rewards do not tie, pi(y) / p(y) = K F(r(y))^(K-1), F
  the reward's CDF under p, so KL(pi || p) = E_pi[log K + (K - 1) log F(r(y))]; F is the
  empirical CDF of every pool sample."""
  k = subsets.shape[1]
  rewards_of = np.take_along_axis(pool_rewards, subsets, axis=1)
  best = np.take_along_axis(subsets, np.argmax(rewards_of, axis=1)[:, None], axis=1)[:, 0]
  ranked = np.sort(pool_rewards.reshape(-1))
  chosen = np.take_along_axis(pool_rewards, best[:, None], axis=1)[:, 0]
  cdf = np.searchsorted(ranked, chosen, side="right") / len(ranked)
  return best, float(np.mean(math.log(k) + (k - 1) * np.log(cdf)))


def measure(ev: Evaluator, args) -> dict[str, Any]:
  """Every method's mean rewards and KL on the held-out prompts."""
  rows: list[dict[str, Any]] = []

  def add(method: str, setting: str, ids, kl_estimate=None, kl_bound=None):
    flat = ids.reshape(-1, ids.shape[-1])
    row = {"method": method, "setting": setting, "samples": len(flat)}
    for name in REWARDS:
      row[name] = float(np.mean(ev.reward(name, flat)))
    row["kl_estimate"] = None if kl_estimate is None else float(kl_estimate)
    row["kl_bound"] = None if kl_bound is None else float(kl_bound)
    row["mean_tokens"] = float(np.mean([len(_generated(r, ev.model.eos_id)) for r in flat]))
    rows.append(row)
    print(json.dumps(row), flush=True)

  # Base samples: the pool best-of-K draws from, and the reward CDF of its KL estimate.
  k_max = max(args.best_of_k)
  pool, _ = ev.sample(sampling.Sampling(num_decodes=k_max), seed=2)
  pool_rewards = ev.reward(MAIN_REWARD, pool.reshape(-1, pool.shape[-1])).reshape(pool.shape[:2])
  # Sampling returns each prompt's decodes best first by log-prob: a random order per prompt
  # makes the first K of them K independent samples.
  order = np.random.RandomState(0).rand(*pool_rewards.shape).argsort(axis=1)
  add("base", "sampling", np.take_along_axis(pool, order[:, :1, None], axis=1), 0.0, 0.0)
  for k in args.best_of_k:
    best, estimate = best_of_k(pool_rewards, order[:, :k])
    chosen = np.take_along_axis(pool, best[:, None, None], axis=1)
    add("best-of-K", f"K={k}", chosen, kl_estimate=estimate, kl_bound=best_of_k_bound(k))

  for name in ("cd_q_de", "cd_fudge_de"):
    for lam in args.lambdas:
      scorer = ev.scorers[name]
      decoder = controlled.TokenwiseCD(scorers=[_weighted(scorer, lam)])
      ids, scores = ev.sample(decoder, seed=3)
      kl = np.mean(scores[:, 0] - ev.base_log_probs(ids[:, 0]))
      add(f"token-wise {name}", f"lambda={lam:g}", ids, kl_estimate=kl)

  for k in args.blockwise_k:
    decoder = controlled.BlockwiseCD(
        scorers=[ev.scorers["cd_q_de"]], num_samples=k, block_length=args.block_length
    )
    ids, _ = ev.sample(decoder, seed=4)
    blocks = np.mean(
        [math.ceil(len(_generated(r, ev.model.eos_id)) / args.block_length) for r in ids[:, 0]]
    )
    add("blockwise cd_q_de", f"K={k}", ids, kl_bound=best_of_k_bound(k) * blocks)

  # Training always gives both tokens, so asking for German alone draws the length bucket
  # at random: the policy is the mixture of the three German prompts, scored as one.
  german = [control_tokens.control_prompt("de", b) for b in control_tokens.LENGTH_BUCKETS]
  parts = [
      ev.sample(sampling.Sampling(), prompt=p, seed=5 + i)[0][:, 0] for i, p in enumerate(german)
  ]
  ids = np.concatenate(parts)[np.random.RandomState(1).permutation(len(german) * ev.prompts)]
  ids = ids[: ev.prompts]
  mixture = np.stack([ev.base_log_probs(ids, prompt=p) for p in german])
  log_pi = np.logaddexp.reduce(mixture, axis=0) - math.log(len(german))
  add(
      "control token",
      "<lang:de><len:any>",
      ids[:, None],
      kl_estimate=np.mean(log_pi - ev.base_log_probs(ids)),
  )
  prompt = control_tokens.control_prompt(language="de", length="long")
  ids, scores = ev.sample(sampling.Sampling(), prompt=prompt, seed=8)
  kl = np.mean(scores[:, 0] - ev.base_log_probs(ids[:, 0]))
  add("control tokens (2 objectives)", prompt, ids, kl_estimate=kl)

  lam = args.lambdas[len(args.lambdas) // 2]
  decoder = controlled.TokenwiseCD(
      scorers=[_weighted(ev.scorers["cd_q_de"], lam), _weighted(ev.scorers["cd_q_length"], lam)]
  )
  ids, scores = ev.sample(decoder, seed=6)
  kl = np.mean(scores[:, 0] - ev.base_log_probs(ids[:, 0]))
  add("token-wise 2 objectives", f"lambda={lam:g} each", ids, kl_estimate=kl)
  return {"rows": rows}


def _weighted(scorer: controlled.PrefixScorer, weight: float) -> controlled.PrefixScorer:
  return controlled.PrefixScorer(scorer.model, scorer.params, weight)


def headline(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """For each blockwise K: the K of best-of-K with the same German reward (log-interpolated
  between the measured K, base sampling being K = 1; None outside them)."""
  best = [(1, r[MAIN_REWARD]) for r in rows if r["method"] == "base"]  # best of 1
  best += [(int(r["setting"][2:]), r[MAIN_REWARD]) for r in rows if r["method"] == "best-of-K"]
  out = []
  for row in rows:
    if row["method"] != "blockwise cd_q_de":
      continue
    target, matched = row[MAIN_REWARD], None
    for (k0, r0), (k1, r1) in zip(best, best[1:]):
      if r0 <= target <= r1 and r1 > r0:
        fraction = (target - r0) / (r1 - r0)
        matched = float(math.exp(math.log(k0) + fraction * (math.log(k1) - math.log(k0))))
        break
    out.append({"blockwise_k": int(row["setting"][2:]), "best_of_k_with_same_reward": matched})
  return out


def run(args: argparse.Namespace) -> dict[str, Any]:
  out_dir = args.out_dir or tempfile.mkdtemp(prefix="cd_experiment_")
  os.makedirs(out_dir, exist_ok=True)
  base_dir = args.base_dir or train_base(args, out_dir)
  rollouts = sample_rollouts(args, base_dir, out_dir)
  write_task_module(out_dir, rollouts)
  scorer_dirs = {name: train_scorer(args, name, base_dir, out_dir) for name in SCORERS}
  ev = Evaluator(args, base_dir, scorer_dirs)
  results = measure(ev, args)
  results["headline"] = headline(results["rows"])
  results["settings"] = {k: v for k, v in vars(args).items() if k not in ("json_out", "plot")}
  results["settings"]["out_dir"] = out_dir
  return results


def format_table(r: dict[str, Any]) -> str:
  def num(x):
    return "-" if x is None else f"{x:.3f}"

  lines = [
      TITLE,
      f"{'method':32} {'setting':22} {'P(de) log':>10} {'length':>8} {'tokens':>7} "
      f"{'KL est.':>8} {'KL bound':>9}",
  ]
  for row in r["rows"]:
    lines.append(
        f"{row['method']:32} {row['setting']:22} {row[MAIN_REWARD]:>10.3f} "
        f"{row['length']:>8.3f} {row['mean_tokens']:>7.2f} {num(row['kl_estimate']):>8} "
        f"{num(row['kl_bound']):>9}"
    )
  for h in r["headline"]:
    matched = h["best_of_k_with_same_reward"]
    lines.append(
        f"blockwise CD-Q K={h['blockwise_k']}: the German reward of best-of-K at K ~ "
        + ("beyond the largest K measured" if matched is None else f"{matched:.1f}")
    )
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4.5))
  methods = dict.fromkeys(row["method"] for row in r["rows"])
  for method in methods:
    rows = [row for row in r["rows"] if row["method"] == method]
    if method == "best-of-K":
      ax.plot(
          [x["kl_bound"] for x in rows],
          [x[MAIN_REWARD] for x in rows],
          "k--",
          label="best-of-K (bound)",
      )
    kls = [x["kl_estimate"] if x["kl_estimate"] is not None else x["kl_bound"] for x in rows]
    suffix = " (bound)" if rows[0]["kl_estimate"] is None else ""
    ax.plot(kls, [x[MAIN_REWARD] for x in rows], "o-", label=method + suffix)
  ax.set_xlabel("KL(pi || p_base), nats per sample")
  ax.set_ylabel("mean log P(German) by LangID")
  ax.set_title(TITLE, fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.cd_experiment", description=__doc__)
  parser.add_argument("--base_steps", type=int, default=1000)
  parser.add_argument("--scorer_steps", type=int, default=300)
  parser.add_argument("--rollout_prompts", type=int, default=256)
  parser.add_argument("--eval_prompts", type=int, default=256)
  parser.add_argument("--lambdas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
  parser.add_argument("--blockwise_k", type=int, nargs="+", default=[2, 4, 8, 16])
  parser.add_argument("--block_length", type=int, default=4)
  parser.add_argument("--best_of_k", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
  parser.add_argument("--max_new_tokens", type=int, default=24)
  parser.add_argument("--out_dir", default=None)
  parser.add_argument("--base_dir", default=None, help="reuse this run's base LM (its MODEL_DIR)")
  parser.add_argument("--json_out", default="cd_experiment.json")
  parser.add_argument("--plot", default="cd_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser,
      args,
      ("base_steps", "scorer_steps", "rollout_prompts", "eval_prompts", "block_length"),
  )
  if min(args.blockwise_k + args.best_of_k) < 1 or min(args.lambdas) < 0:
    parser.error("every K must be >= 1 and every lambda >= 0")
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
