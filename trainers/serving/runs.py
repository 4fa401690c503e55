"""Finished runs as served models: each run's own operative config (MODEL_DIR/config.gin)
builds its Model and names its task (whose vocabulary turns text into ids), and its newest
checkpoint gives the parameters. Runs of different models load one after another into the
same process, each config parsed alone."""

import os
from typing import Any, Optional

import gin
import jax

from model_zoo.errors import ConfigError, MissingFileError
from trainers import cli, restore
from trainers import train  # noqa: F401  (registers train(), which run configs bind)
from trainers.dataset_config import DatasetConfig
from trainers.infer_examples import Codec
from trainers.serving.replica import ServedModel


@gin.configurable
def _served_run(model=gin.REQUIRED, dataset_cfg=gin.REQUIRED, feature_lengths=gin.REQUIRED):
  return model, dataset_cfg, feature_lengths


_READ = (
    "_served_run.model = %MODEL",
    "_served_run.dataset_cfg = @train/DatasetConfig()",
    "_served_run.feature_lengths = %TASK_FEATURE_LENGTHS",
)


def run_config(name: str, model_dir: str) -> str:
  """The operative config of the run in `model_dir`, which must be there."""
  config = os.path.join(model_dir, "config.gin")
  if not os.path.isfile(config):
    raise MissingFileError(
        f"serve.models[{name!r}] = {model_dir!r} holds no config.gin: give the MODEL_DIR of a "
        "run that trained (it writes its operative config there)"
    )
  return config


def load(name: str, model_dir: str, slo_s: Optional[float] = None) -> ServedModel:
  """The run in `model_dir` as the served model `name`. Leaves gin cleared."""
  config = run_config(name, model_dir)
  cli.import_configurables()  # the model configurables a run config binds
  with gin.unlock_config():
    gin.clear_config()
    try:
      gin.parse_config_files_and_bindings([config], list(_READ), finalize_config=False)
      model, dataset_cfg, lengths = _served_run()
    except (ValueError, KeyError, ImportError) as e:
      raise ConfigError(
          f"serve.models[{name!r}]: cannot rebuild the run in {model_dir}: {e}"
      ) from e
    finally:
      gin.clear_config()
  codec = _codec(dataset_cfg)
  _, params = restore.restore_params(model, model_dir)
  length = model.FEATURE_CONVERTER_CLS.decode_length(lengths)
  return ServedModel(name, model, jax.device_get(params), codec, length, slo_s)


def _codec(dataset_cfg: DatasetConfig) -> Codec:
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: the task's vocabulary)

  return Codec.of_features(data.output_features(dataset_cfg))


def check_slo_names(models: dict[str, str], slo_s: dict[str, float]) -> None:
  unknown = sorted(set(slo_s) - set(models))
  if unknown:
    raise ConfigError(f"serve.slo_s names models {unknown} that serve.models does not have")


def load_all(models: dict[str, str], slo_s: dict[str, float]) -> list[ServedModel]:
  check_slo_names(models, slo_s)
  return [load(name, directory, slo_s.get(name)) for name, directory in models.items()]


def parse_placement(text: str, names: list[str]) -> Any:
  """'1x2:a,b 2x1:a' -> the Placement of a 1x2 group holding a and b and a 2x1 group holding
  a (stages x tensor, then the models)."""
  from trainers.serving.profiles import ParallelConfig  # pylint: disable=g-import-not-at-top
  from trainers.serving.simulator import Group, Placement  # pylint: disable=g-import-not-at-top

  groups = []
  for part in text.split():
    shape, _, listed = part.partition(":")
    stages, _, tensor = shape.partition("x")
    if not (stages.isdigit() and tensor.isdigit() and listed):
      raise ConfigError(
          f"serve.placement: {part!r} is not STAGESxTENSOR:MODEL[,MODEL...], e.g. '1x2:a,b'"
      )
    models = tuple(listed.split(","))
    unknown = sorted(set(models) - set(names))
    if unknown:
      raise ConfigError(f"serve.placement names models {unknown}; serving {sorted(names)}")
    groups.append(Group(ParallelConfig(int(stages), int(tensor)), models))
  return Placement(tuple(groups))
