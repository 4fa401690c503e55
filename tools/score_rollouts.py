"""Scores sampled continuations with named rewards, into a rollout file for a prefix scorer.

  python -m tools.score_rollouts --predictions FILE --rewards length,langid:de \\
      --task TASK [--module M] --max_new_tokens N --output FILE [--overwrite]

--predictions is what `python -m trainers.infer` wrote with a sampling decoder (each line's
"outputs" when it ran with --gin.infer.return_all_decodes=True, else its "output"). Each
continuation becomes one line of --output ({"input", "output", "num_tokens", "rewards"};
`tasks.controlled.rollouts.register_rollout_task` reads it). num_tokens counts the ids of
--task's targets vocabulary plus the EOS, capped at --max_new_tokens (the sampler's room).
Rewards: `tasks.controlled.rewards` (a module given as --module may register more).
"""

import argparse
import os
import sys
from typing import Mapping, Sequence

import numpy as np

from model_zoo.errors import ConfigError, UserError
from tasks import pipeline
from tasks.controlled import rewards, rollouts
from tools import benchmark_common


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m tools.score_rollouts", allow_abbrev=False, description=__doc__.split("\n")[0]
  )
  parser.add_argument("--predictions", required=True, help="JSONL of trainers.infer")
  parser.add_argument("--rewards", required=True, help="comma-separated, e.g. length,langid:de")
  parser.add_argument("--task", required=True, help="the task whose targets vocabulary counts")
  parser.add_argument("--module", default=None, help="imported first: registers tasks, rewards")
  parser.add_argument(
      "--max_new_tokens", type=int, required=True, help="how many tokens the sampler could add"
  )
  parser.add_argument("--output", required=True, help="the rollout JSONL to write")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
  return parser


def score(args: argparse.Namespace) -> tuple[list[rewards.Rollout], dict[str, np.ndarray]]:
  """The rollouts of --predictions and each named reward's values for them."""
  if os.path.exists(args.output) and not args.overwrite:
    raise ConfigError(f"{args.output} already exists; pass --overwrite to replace it")
  if args.max_new_tokens < 1:
    raise ConfigError(f"--max_new_tokens must be >= 1; got {args.max_new_tokens}")
  names = [name.strip() for name in args.rewards.split(",") if name.strip()]
  if not names:
    raise ConfigError("--rewards names no reward; e.g. --rewards length,langid:de")
  pipeline.import_task_module(args.module)
  reward_fns = {name: rewards.get(name) for name in names}
  provider = pipeline.get_task_or_mixture(args.task)
  if "targets" not in provider.output_features:
    raise ConfigError(
        f"--task {args.task} has no 'targets' feature, whose vocabulary counts the tokens; "
        "name the task the sampled model was trained on"
    )
  pipeline.check_vocabulary_files(provider)
  vocabulary = provider.output_features["targets"].vocabulary
  room = args.max_new_tokens
  scored = [
      rewards.Rollout(prompt, output, min(len(vocabulary.encode(output)) + 1, room), room)
      for prompt, outputs in rollouts.read_predictions(args.predictions)
      for output in outputs
  ]
  if not scored:
    raise ConfigError(f"{args.predictions} holds no predictions to score")
  return scored, {name: fn(scored) for name, fn in reward_fns.items()}


def table(values: Mapping[str, np.ndarray]) -> str:
  """Per reward: mean, min and max over the rollouts."""
  width = max(len("reward"), *map(len, values))
  rows = [f"{'reward':<{width}}  {'mean':>10}  {'min':>10}  {'max':>10}"]
  for name, v in values.items():
    rows.append(f"{name:<{width}}  {v.mean():>10.4f}  {v.min():>10.4f}  {v.max():>10.4f}")
  return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  try:
    scored, values = score(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    rollouts.write_rollouts(args.output, scored, values)
  except (OSError, UserError) as e:  # anything else is a bug: its traceback shows
    return benchmark_common.report_user_error(e)
  print(table(values))
  print(f"Wrote {len(scored)} rollouts to {args.output}")
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.exit(main())
