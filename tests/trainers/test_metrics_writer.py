"""MetricsWriter after a resume: the JSONL file and TensorBoard show each step once."""

import json
import os
import struct

from tensorboardX.proto import event_pb2

from trainers import metrics_writer


def _write(model_dir, steps, resume_step=None, offset=0.0):
  writer = metrics_writer.MetricsWriter(str(model_dir), "train", resume_step=resume_step)
  for step in steps:
    writer.write(step, {"loss": offset + step})
  writer.close()


def _rows(model_dir):
  with open(os.path.join(model_dir, "train_metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _events(path):
  """The Event protos of one TFRecord event file."""
  with open(path, "rb") as f:
    data = f.read()
  events, i = [], 0
  while i < len(data):
    (length,) = struct.unpack("<Q", data[i : i + 8])
    i += 12  # length, its crc
    event = event_pb2.Event()
    event.ParseFromString(data[i : i + length])
    events.append(event)
    i += length + 4  # data, its crc
  return events


def _tensorboard_points(logdir, tag):
  """The (step, value) points TensorBoard shows: it reads the event files in name order,
  and a START session log at step P hides the points read before it at steps >= P."""
  points = []
  for name in sorted(os.listdir(logdir)):
    for event in _events(os.path.join(logdir, name)):
      if event.session_log.status == event_pb2.SessionLog.START:
        points = [(s, v) for s, v in points if s < event.step]
      points += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
  return points


def test_resume_drops_the_rows_after_the_resume_step(tmp_path):
  _write(tmp_path, range(1, 11))
  _write(tmp_path, [7, 8], resume_step=6, offset=100.0)
  rows = _rows(tmp_path)
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
  assert [r["loss"] for r in rows] == [1, 2, 3, 4, 5, 6, 107, 108]
  assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]  # the temporary file is gone


def test_resume_purges_later_points_in_tensorboard_and_keeps_the_old_file(tmp_path):
  _write(tmp_path, range(1, 11))
  (old_file,) = os.listdir(tmp_path / "train")
  old_size = os.path.getsize(tmp_path / "train" / old_file)
  _write(tmp_path, [7, 8], resume_step=6, offset=100.0)
  files = sorted(os.listdir(tmp_path / "train"))
  assert len(files) == 2 and files[0] == old_file  # the old file first, untouched
  assert os.path.getsize(tmp_path / "train" / old_file) == old_size
  starts = [
      e.step
      for e in _events(tmp_path / "train" / files[1])
      if e.session_log.status == event_pb2.SessionLog.START
  ]
  assert starts == [7]  # tensorboardX's purge_step: resume step + 1
  shown = _tensorboard_points(tmp_path / "train", "loss")
  assert shown == [(s, float(s) + (100.0 if s > 6 else 0.0)) for s in range(1, 9)]


def test_a_writer_without_resume_step_appends_and_purges_nothing(tmp_path):
  _write(tmp_path, range(1, 4))
  _write(tmp_path, [2])
  assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3, 2]
  for name in os.listdir(tmp_path / "train"):
    assert not [e for e in _events(tmp_path / "train" / name) if e.HasField("session_log")]


def test_resume_drops_a_row_cut_short_by_a_kill_and_keeps_rows_without_step(tmp_path):
  _write(tmp_path, range(1, 4))
  with open(tmp_path / "train_metrics.jsonl", "a", encoding="utf-8") as f:
    f.write('{"note": "by hand"}\n{"step": 4, "lo')  # killed in the middle of a write
  _write(tmp_path, [4], resume_step=3, offset=100.0)
  rows = _rows(tmp_path)
  assert rows[3] == {"note": "by hand"}
  assert [r.get("step") for r in rows] == [1, 2, 3, None, 4] and rows[-1]["loss"] == 104


def test_resume_in_a_fresh_model_dir(tmp_path):
  _write(tmp_path, [1, 2], resume_step=0)
  assert [r["step"] for r in _rows(tmp_path)] == [1, 2]
