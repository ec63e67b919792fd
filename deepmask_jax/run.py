"""What `main` does with a config: train, or evaluate a checkpoint (`config.mode`)."""

import jax

from deepmask_jax import families


def run(config, workdir: str, multihost: bool = False) -> dict:
  """Runs `config.mode` ('train' or 'eval') in `workdir`; returns its figures."""
  if multihost:
    # Cluster settings come from the environment (SLURM, Cloud TPU, or
    # JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
    jax.distributed.initialize()
  if config.mode == 'train':
    from deepmask_jax.train.trainer import train_and_evaluate
    return train_and_evaluate(config, workdir,
                              families.get_family(config.model))
  if config.mode == 'eval':
    from deepmask_jax.evaluate import evaluate_checkpoint
    return evaluate_checkpoint(config, workdir)
  raise ValueError(f"config.mode must be 'train' or 'eval', got {config.mode!r}")
