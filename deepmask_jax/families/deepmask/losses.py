"""Soft-margin losses of the reference (train.lua, TrainerDeepMask L82-92).

`nn.SoftMarginCriterion` is the mean of log(1 + exp(-y * f)). On mask batches
the reference multiplies the gradient by the batch size, so the objective is
the per-sample pixel mean *summed* over the batch; on score batches it is the
batch mean. The score loss therefore weighs exactly 1/batch (1/32) against
the mask loss, the NIPS paper's lambda. The losses run in float32 whatever
the model's compute dtype (bf16 models hand float32 logits; any others are
cast).

Data parallel form: every device sees `local` samples of a `global_batch`;
each function returns the device's share such that the mean over devices
(`lax.pmean`) equals the global objective.
"""

import jax
import jax.numpy as jnp


def soft_margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Elementwise log(1 + exp(-y f)) for labels y in {-1, +1}, computed stably."""
  return jax.nn.softplus(-labels * logits.astype(jnp.float32))


def mask_loss(logits: jax.Array, labels: jax.Array, global_batch: int) -> jax.Array:
  """Mask objective on a device: mean over local samples times the global batch.

  Args:
    logits, labels: [b, gSz, gSz]; labels in {-1, +1} (mask batches hold
      positives only, so every sample counts).
    global_batch: the batch size summed over all devices.
  Returns a scalar whose mean over devices is sum_k mean_ij loss_kij.
  """
  per_sample = soft_margin(logits, labels).mean(axis=(1, 2))
  return per_sample.mean() * global_batch


def score_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Score objective on a device: [b] logits and {-1, +1} labels -> batch mean."""
  return soft_margin(logits, labels).mean()
