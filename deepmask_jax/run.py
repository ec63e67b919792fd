"""What `main` does with a config: train, or evaluate a checkpoint (`config.mode`)."""

from deepmask_jax import families
from deepmask_jax.config_renames import apply_renames
from deepmask_jax.errors import InputError
from deepmask_jax.train.parallel import initialize_distributed
from deepmask_jax.train.resume_check import allows_changes

MODES = ('train', 'eval')


def run(config, workdir: str, multihost: bool = False) -> dict:
  """Runs `config.mode` ('train' or 'eval') in `workdir`; returns its figures.

  Fields `config` sets under an old name are moved to their new one first.
  """
  apply_renames(config)
  if config.mode not in MODES:
    raise InputError(f"--config.mode must be 'train' or 'eval', got "
                     f'{config.mode!r}')
  if multihost:
    initialize_distributed()
  if config.mode == 'train':
    from deepmask_jax.train.trainer import train_and_evaluate
    allows_changes(config)  # A bad value fails before the config is resolved.
    return train_and_evaluate(families.bind(config), workdir)
  from deepmask_jax.evaluate import evaluate_checkpoint
  return evaluate_checkpoint(config, workdir)
