"""In-training and stand-alone SeqIO evaluation: the tasks' metric_fns on decoded outputs."""

import json

import sacrebleu

from trainers import eval as eval_lib
from trainers import infer, train

FLAGS = [
    "--gin_file=gin/models/encoder_decoder_tiny.gin",
    "--gin_file=gin/runs/pretrain.gin",
    "--gin.MIXTURE_OR_TASK_MODULE='tests.trainers.copy_task'",
    "--gin.MIXTURE_OR_TASK_NAME='copy_verse'",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 24, 'targets': 24}",
    "--gin.BATCH_SIZE=8",
    "--gin.EVAL_STEPS=1",
    "--gin.CHECKPOINT_PERIOD=20",
    "--gin.TRAIN_STEPS=20",
    "--gin.TransformerConfig.dtype='float32'",
    "--gin.LEARNING_RATE_SCHEDULE=@constant_schedule()",
    "--gin.constant_schedule.learning_rate=0.003",
    "--gin.with_gradient_clipping.optimizer=@adamw()",
    "--gin.adamw.schedule=%LEARNING_RATE_SCHEDULE",
]


def test_training_and_eval_report_seqio_metrics_of_the_decodes(tmp_path, capfd):
  flags = FLAGS + [f"--gin.MODEL_DIR='{tmp_path}'"]
  code = train.main(
      flags
      + ["--gin.EVAL_PERIOD=20", "--gin.train.infer_eval_dataset_cfg=@infer_eval/DatasetConfig()"]
  )
  log = "".join(capfd.readouterr())
  assert code == 0, log
  assert "copy_verse" in log and "accuracy" in log and "chrf" in log
  last = json.loads((tmp_path / "eval_metrics.jsonl").read_text().splitlines()[-1])
  assert {"copy_verse/accuracy", "copy_verse/chrf"} <= set(last)

  code = eval_lib.main(flags + ["--gin_file=gin/runs/eval.gin"])
  log = "".join(capfd.readouterr())
  assert code == 0, log
  evaluated = json.loads((tmp_path / "eval_metrics.jsonl").read_text().splitlines()[-1])
  assert evaluated["copy_verse/chrf"] == last["copy_verse/chrf"]  # same checkpoint, same decodes

  # Independently: decode the split with trainers.infer and score with sacrebleu directly.
  code = infer.main(
      flags
      + [
          "--gin_file=gin/runs/infer.gin",
          f"--gin.infer.output_dir='{tmp_path / 'inf'}'",
          "--gin.infer.dataset_cfg=@infer_eval/DatasetConfig()",
      ]
  )
  log = "".join(capfd.readouterr())
  assert code == 0, log
  records = [
      json.loads(line)
      for line in next((tmp_path / "inf").glob("predict-*.jsonl")).read_text().splitlines()
  ]
  assert len(records) == 16
  outputs = [r["output"] for r in records]
  targets = [r["target"] for r in records]
  chrf = sacrebleu.corpus_chrf(outputs, [targets]).score
  accuracy = 100.0 * sum(o == t for o, t in zip(outputs, targets)) / len(records)
  assert abs(evaluated["copy_verse/chrf"] - chrf) < 1e-6
  assert abs(evaluated["copy_verse/accuracy"] - accuracy) < 1e-6
