"""`python -m tools.benchmark_asr_rtf`: how fast an ASR model transcribes, with and without
shallow fusion, at beam 4 and 8: audio seconds decoded per wall-clock second (the inverse of
the real-time factor; above 1 is faster than real time).

Restores the ASR model (its run's `--gin_file` flags and `--gin.` overrides, `--model_dir`) and
the LM (`--lm_gin_file` flags of its run, `--lm_dir`), reads `--batches` batches of the ASR
run's infer_eval dataset at `--split` (real utterances: audio seconds = real frames x 10 ms),
and times `Model.predict_batch` with beam search (alpha 0) and with `ShallowFusion` (lambda
`--lm_weight`, beta `--length_bonus`) around the same beam search. Each program is compiled
ahead of time and timed over every batch, `--repeats` times after a warm-up pass; the median
pass is reported, and fused / plain time ratios come from the same run, side by side.

  python -m tools.benchmark_asr_rtf --gin_file=gin/models/asr_tiny.gin \\
    --gin_file=gin/runs/pretrain.gin --gin_file=gin/mixtures/asr.gin \\
    --gin_file=gin/runs/asr.gin --gin.TRAIN_STEPS=3000 --model_dir=/tmp/asr \\
    --lm_gin_file=gin/models/decoder_only_tiny.gin --lm_dir=/tmp/asr_lm --json_out=rtf.json
"""

import argparse
import itertools
import sys
import time
from typing import Any, Optional, Sequence

import jax
import numpy as np

from model_zoo.decoding import beam_search, controlled
from tools import benchmark_common, benchmark_decode, fusion_sweep

FRAME_SECONDS = 0.01  # tasks/asr/features.py: one log-mel frame per 10 ms


def _decoders(restored, args) -> dict[str, Any]:
  decoders = {}
  for beam in args.beam_sizes:
    decoders[f"beam{beam}"] = beam_search.BeamSearch(beam_size=beam, alpha=0.0)
    decoders[f"beam{beam}+lm"] = fusion_sweep.fused(
        restored, args.lm_weight, args.length_bonus, beam
    )
  return decoders


def _pass(compiled, params, decoder_params, batches) -> float:
  """Seconds to decode every batch once."""
  start = time.perf_counter()
  for batch in batches:
    jax.block_until_ready(compiled(params, decoder_params, batch))
  return time.perf_counter() - start


def measure(args: argparse.Namespace, restored: fusion_sweep.Restored) -> dict[str, Any]:
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: the batches)

  model = restored.asr_model
  batches = [
      dict(b)
      for b in itertools.islice(
          data.batches(restored.dataset, model.FEATURE_CONVERTER_CLS), args.batches
      )
  ]
  audio_s = sum(float(np.sum(b["encoder_input_mask"])) for b in batches) * FRAME_SECONDS
  rows = []
  for name, decoder in _decoders(restored, args).items():
    fn = lambda p, dp, b, decoder=decoder: model.predict_batch(
        p, b, decoder=controlled.with_decoder_params(decoder, dp)
    )[0]
    decoder_params = controlled.decoder_params(decoder)
    compiled, compile_s = benchmark_decode.compile_program(
        fn, restored.asr_params, decoder_params, batches[0]
    )
    _pass(compiled, restored.asr_params, decoder_params, batches)  # warm-up
    times = [
        _pass(compiled, restored.asr_params, decoder_params, batches) for _ in range(args.repeats)
    ]
    median = benchmark_common.percentile(times, 50)
    rows.append(
        {
            "decoder": name,
            "compile_s": compile_s,
            "times_s": times,
            "median_s": median,
            "audio_seconds_per_second": audio_s / median,
        }
    )
  by_name = {row["decoder"]: row for row in rows}
  for row in rows:
    if row["decoder"].endswith("+lm"):
      row["time_vs_plain"] = row["median_s"] / by_name[row["decoder"][: -len("+lm")]]["median_s"]
  return {
      "audio_seconds": audio_s,
      "utterances": int(sum(np.sum(np.any(b["encoder_input_mask"], axis=1)) for b in batches)),
      "batch_size": restored.dataset.batch_size,
      "lm_weight": args.lm_weight,
      "length_bonus": args.length_bonus,
      "device": str(jax.devices()[0]),
      "rows": rows,
  }


def format_table(r: dict[str, Any]) -> str:
  lines = [
      f"{r['utterances']} utterances, {r['audio_seconds']:.1f} s of audio, batch "
      f"{r['batch_size']}, on {r['device']}",
      f"{'decoder':<12}{'median s':>10}{'audio s/s':>11}{'x plain':>9}{'compile s':>11}",
  ]
  for row in r["rows"]:
    ratio = row.get("time_vs_plain")
    lines.append(
        f"{row['decoder']:<12}{row['median_s']:>10.2f}{row['audio_seconds_per_second']:>11.1f}"
        f"{'' if ratio is None else f'{ratio:.2f}':>9}{row['compile_s']:>11.1f}"
    )
  return "\n".join(lines)


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = benchmark_common.new_parser("python -m tools.benchmark_asr_rtf", __doc__, "")
  fusion_sweep.add_run_arguments(parser, split="test")
  parser.add_argument("--batches", type=int, default=4)
  parser.add_argument("--beam_sizes", type=int, nargs="+", default=[4, 8])
  parser.add_argument("--lm_weight", type=float, default=0.3)
  parser.add_argument("--length_bonus", type=float, default=0.5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json_out", default=None)
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  if min(args.batches, args.repeats, *args.beam_sizes) < 1:
    parser.error("--batches, --repeats and every beam size must be >= 1")
  if args.lm_weight < 0:
    parser.error(f"--lm_weight={args.lm_weight}: lambda must be >= 0")
  return args, bindings


def main(argv: Optional[Sequence[str]] = None) -> int:
  return benchmark_common.run_main(
      argv, _parse, fusion_sweep.restore_from_args, measure, format_table, packages=("jax",)
  )


if __name__ == "__main__":
  sys.exit(main())
