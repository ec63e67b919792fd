"""What `main` does with a config: train, or evaluate a checkpoint (`config.mode`)."""

import jax

from deepmask_jax import families
from deepmask_jax.errors import InputError

MODES = ('train', 'eval')


def run(config, workdir: str, multihost: bool = False) -> dict:
  """Runs `config.mode` ('train' or 'eval') in `workdir`; returns its figures."""
  if config.mode not in MODES:
    raise InputError(f"--config.mode must be 'train' or 'eval', got "
                     f'{config.mode!r}')
  if multihost:
    # Cluster settings come from the environment (SLURM, Cloud TPU, or
    # JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
    jax.distributed.initialize()
  if config.mode == 'train':
    from deepmask_jax.train.trainer import train_and_evaluate
    return train_and_evaluate(config, workdir,
                              families.get_family(config.model))
  from deepmask_jax.evaluate import evaluate_checkpoint
  return evaluate_checkpoint(config, workdir)
