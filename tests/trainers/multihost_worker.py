"""One process of a (possibly multi-process) tiny training run, for tests/trainers/test_multihost.py.

Run from the repository root:

  python -m tests.trainers.multihost_worker --out FILE --model_dir DIR --steps N \
      [--coordinator_address HOST:PORT --num_processes P --process_id I]

or with PODZOO_COORDINATOR_ADDRESS / PODZOO_NUM_PROCESSES / PODZOO_PROCESS_ID in the
environment; with neither it is a plain single-process run over the local devices.

It trains a tiny float32 DecoderOnlyModel with the real Partitioner and Trainer on a
synthetic global batch of 8 rows per step. Row r of batch b is a deterministic function of
(b, r), and each process builds only its own rows [pid*8/P, (pid+1)*8/P): it "loads only
its shard of the data". Rows end in a different amount of padding (loss weight 0), so a
per-process instead of a global loss normalizer would change the result. Process 0 writes
{"losses", "param_checksum", "num_processes", ...} as JSON to --out; every process makes a
MetricsWriter on the shared --model_dir, which must write only on process 0.
"""

import argparse
import json
import os
import sys

import numpy as np

GLOBAL_BATCH = 8
LENGTH = 16
VOCAB = 64


def global_row(batch_index: int, row: int) -> dict[str, np.ndarray]:
  """Row `row` of global batch `batch_index`; identical whichever process builds it."""
  rng = np.random.RandomState(1000 * batch_index + row)
  # A skewed unigram distribution over ids 2..VOCAB-1 (0 is padding/BOS), so a few steps of
  # training visibly lower the loss.
  ids = np.arange(2, VOCAB)
  probs = 1.0 / (ids - 1.0) ** 1.2
  probs /= probs.sum()
  targets = rng.choice(ids, size=LENGTH, p=probs).astype(np.int32)
  num_padding = row  # 0..7 padded positions at the end: the processes' weight sums differ
  weights = np.ones(LENGTH, np.float32)
  if num_padding:
    targets[-num_padding:] = 0
    weights[-num_padding:] = 0.0
  inputs = np.concatenate([[0], targets[:-1]]).astype(np.int32)  # shifted right, BOS 0
  return {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": targets,
      "decoder_loss_weights": weights,
  }


def local_batch(batch_index: int, process_index: int, process_count: int) -> dict[str, np.ndarray]:
  """This process's rows of global batch `batch_index` (and only those are generated)."""
  if GLOBAL_BATCH % process_count:
    raise ValueError(f"global batch {GLOBAL_BATCH} does not split over {process_count} processes")
  per_process = GLOBAL_BATCH // process_count
  rows = [
      global_row(batch_index, r)
      for r in range(process_index * per_process, (process_index + 1) * per_process)
  ]
  return {k: np.stack([row[k] for row in rows]) for k in rows[0]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--multihost", action="store_true")
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--num_processes", type=int, default=None)
  parser.add_argument("--process_id", type=int, default=None)
  args = parser.parse_args(argv)

  # Before anything touches a JAX backend: distributed.initialize must come first.
  from trainers import distributed

  distributed.initialize(
      args.multihost, args.coordinator_address, args.num_processes, args.process_id
  )

  import jax
  from jax.experimental import multihost_utils

  from model_zoo import dense, metrics as metrics_lib, models
  from tests.tiny import tiny_config
  from trainers import metrics_writer, optimizers, partitioning
  from trainers.trainer import Trainer

  pid, nproc = jax.process_index(), jax.process_count()
  cfg = tiny_config(vocab_size=VOCAB)
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(cfg))
  partitioner = partitioning.Partitioner(mesh_shape=(-1, 1, 1, 1), devices=jax.devices())
  schedule = optimizers.constant_schedule(1e-2)
  trainer = Trainer(
      model=model,
      partitioner=partitioner,
      optimizer=optimizers.adamw(schedule),
      learning_rate_schedule=schedule,
      num_microbatches=1,
      seed=0,
  )

  shapes = {k: (GLOBAL_BATCH,) + v.shape for k, v in global_row(0, 0).items()}
  state = trainer.init_state(shapes)
  os.makedirs(args.model_dir, exist_ok=True)  # as trainers.train does, on every process
  writer = metrics_writer.MetricsWriter(args.model_dir, "train")

  losses, rows_seen = [], []
  for b in range(args.steps):
    batch = local_batch(b, pid, nproc)
    rows_seen.append(int(batch["decoder_target_tokens"].shape[0]))
    state, step_metrics = trainer.train_step(state, batch)
    values = metrics_lib.values(step_metrics)
    losses.append(values["loss"])
    writer.write(b + 1, values)
  writer.close()

  # Every process takes part in the gather (a collective); only process 0 writes the result.
  host_params = multihost_utils.process_allgather(state.params, tiled=True)
  checksum = float(
      sum(np.sum(np.abs(np.asarray(p, np.float64))) for p in jax.tree.leaves(host_params))
  )
  if pid == 0:
    result = {
        "losses": losses,
        "param_checksum": checksum,
        "num_processes": nproc,
        "num_devices": jax.device_count(),
        "local_rows_per_step": rows_seen,
        "step": int(jax.device_get(state.step)),
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(result, f)
    os.replace(tmp, args.out)
  print(f"process {pid}/{nproc}: losses {losses} checksum {checksum}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
