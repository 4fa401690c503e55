"""Small models and synthetic batches shared by the trainer tests."""

import os
import shutil

import jax
import numpy as np

from model_zoo import dense, models
from tests.tiny import tiny_config
from trainers import checkpoints, optimizers, partitioning, train, trainer

TINY = tiny_config()


def tiny_model(**overrides) -> models.DecoderOnlyModel:
  return models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config(**overrides)))


def synthetic_batch(
    index: int, rows: int = 8, length: int = 16, vocab: int = 64
) -> dict[str, np.ndarray]:
  """A deterministic decoder-only batch with ragged padding (so loss weights differ by row)."""
  rs = np.random.RandomState(1000 + index)
  targets = rs.randint(2, vocab, size=(rows, length)).astype(np.int32)
  lengths = rs.randint(length // 2, length + 1, size=rows)
  weights = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
  targets = targets * weights
  inputs = np.concatenate([np.zeros((rows, 1), np.int32), targets[:, :-1]], axis=1)
  return {
      "decoder_target_tokens": targets,
      "decoder_input_tokens": inputs,
      "decoder_loss_weights": weights,
  }


def make_trainer(
    mesh_shape=(-1, 1, 1, 1),
    num_devices=None,
    num_microbatches=1,
    learning_rate=1e-2,
    model=None,
    optimizer=optimizers.adamw,
) -> trainer.Trainer:
  """A Trainer of the tiny model (or `model`) with `optimizer(schedule)` at a constant rate."""
  devices = jax.devices()[:num_devices] if num_devices else None
  partitioner = partitioning.Partitioner(mesh_shape=mesh_shape, devices=devices)
  schedule = optimizers.constant_schedule(learning_rate)
  return trainer.Trainer(
      model or tiny_model(),
      partitioner,
      optimizer(schedule),
      schedule,
      num_microbatches=num_microbatches,
  )


def shapes_of(batch) -> dict:
  return {k: v.shape for k, v in batch.items()}


def train_losses(tr: trainer.Trainer, num_steps: int, state=None, first_batch: int = 0):
  state = state if state is not None else tr.init_state(shapes_of(synthetic_batch(0)))
  losses = []
  for i in range(first_batch, first_batch + num_steps):
    state, metrics = tr.train_step(state, synthetic_batch(i))
    losses.append(float(metrics["loss"].value()))
  return state, losses


def save_trained_lm(model_dir, model=None, steps: int = 1):
  """Writes a MODEL_DIR whose checkpoint holds `model` (default the tiny LM) after `steps`
  steps on the synthetic batches, as a pre-training run leaves it; returns its params."""
  tr = make_trainer(num_devices=1, model=model)
  state, _ = train_losses(tr, steps)
  ckpt = checkpoints.Checkpointer(os.path.join(str(model_dir), "checkpoints"))
  ckpt.save(state, {"train_batches": steps})
  ckpt.close()
  return jax.device_get(state.params)


def finetune_start(initial, directory: str, model=None, num_devices: int = 1):
  """A fine-tuning trainer's state as train() starts it in the empty MODEL_DIR `directory`
  with `initial` (an InitialCheckpoint)."""
  tr = make_trainer(num_devices=num_devices, model=model)
  shutil.rmtree(directory, ignore_errors=True)
  ckpt = checkpoints.Checkpointer(directory)
  try:
    return train._restore_or_init(tr, ckpt, shapes_of(synthetic_batch(0)), initial)[0]
  finally:
    ckpt.close()
