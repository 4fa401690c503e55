"""Parses a gin/mixtures fragment the way a user's command line includes it."""

from typing import Sequence


def parse_with_tiny_encoder_decoder(mixture_gin: str, flags: Sequence[str] = ()) -> None:
  """Binds gin as `trainers.train` would for the tiny enc-dec + pretrain run + `mixture_gin`,
  then the command line's `flags` (e.g. "--gin.NAME=VALUE")."""
  # JAX and the trainer are imported only here, by the tests that need them.
  from trainers import cli, gin_utils, train  # noqa: F401  (train registers its configurables)

  cli.import_configurables()
  gin_utils.parse_gin(
      gin_utils.parse_flags(
          [
              "--gin_file=gin/models/encoder_decoder_tiny.gin",
              "--gin_file=gin/runs/pretrain.gin",
              f"--gin_file={mixture_gin}",
              "--gin.MODEL_DIR='/tmp/unused'",
              "--gin.TRAIN_STEPS=1",
              *flags,
          ]
      )
  )
