"""In-training and stand-alone SeqIO evaluation: the tasks' metric_fns on decoded outputs."""

import json

import pytest
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


@pytest.mark.slow
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

  # A second decoder (the same greedy one) decodes the split again, reported under its name.
  code = eval_lib.main(
      flags + ["--gin_file=gin/runs/eval.gin", "--gin.evaluate.more_decoders={'again': @greedy()}"]
  )
  log = "".join(capfd.readouterr())
  assert code == 0, log
  assert log.count("cross_entropy") == 1  # each metric shown once
  rows = [json.loads(line) for line in (tmp_path / "eval_metrics.jsonl").read_text().splitlines()]
  assert [row["step"] for row in rows] == [20]  # eval's row replaces training's of its step
  evaluated = rows[-1]
  assert evaluated["copy_verse/chrf"] == last["copy_verse/chrf"]  # same checkpoint, same decodes
  assert evaluated["copy_verse/again/chrf"] == evaluated["copy_verse/chrf"]
  assert evaluated["copy_verse/again/accuracy"] == evaluated["copy_verse/accuracy"]

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


@pytest.mark.slow
def test_eval_of_a_task_without_metric_fns_prints_and_writes_its_losses_once(tmp_path, capfd):
  """The quickstart task has no metric_fns: eval.gin's SeqIO metrics add nothing to show."""
  flags = [
      "--gin_file=gin/runs/quickstart.gin",
      f"--gin.MODEL_DIR='{tmp_path}'",
      "--gin.BATCH_SIZE=8",
      '--gin.TASK_FEATURE_LENGTHS={"targets": 32}',
      "--gin.EVAL_STEPS=1",
  ]
  code = train.main(
      flags
      + [
          "--gin.TRAIN_STEPS=2",
          "--gin.EVAL_PERIOD=2",
          "--gin.CHECKPOINT_PERIOD=2",
          "--gin.train.predict_prompts=[]",
          "--gin.train.eval_baselines=None",
      ]
  )
  assert code == 0, "".join(capfd.readouterr())
  capfd.readouterr()
  path = tmp_path / "eval_metrics.jsonl"
  trained = json.loads(path.read_text())
  for _ in range(2):  # evaluating the same checkpoint again replaces its row
    code = eval_lib.main(flags + ["--gin_file=gin/runs/eval.gin"])
    log = "".join(capfd.readouterr())
    assert code == 0, log
    assert "(no metrics)" not in log and log.count("cross_entropy") == 1, log
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["step"] for row in rows] == [2]
    assert set(rows[0]) == {"step", "time", "accuracy", "cross_entropy", "loss", "z_loss"}
    assert rows[0]["loss"] == trained["loss"]  # the same checkpoint and batch
