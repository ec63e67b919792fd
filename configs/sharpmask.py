"""SharpMask stage 2 (TrainerSharpMask): refine a trained, frozen DeepMask.

Mask batches only (hfreq 0), labels at 160 px, plain SGD (no momentum, no
weight decay) on the refinement modules. The learning rate decays as the
reference intended, 1e-3 / 5e-4 / 1e-4 at epochs 50 / 80; the reference's
own schedule never decays (see docs/reference_fixes.md).
Set `--config.deepmask_checkpoint=<DeepMask workdir or converted model.t7>`.
"""

from deepmask_jax.config_schema import sibling_config


def get_config():
  config = sibling_config(__file__, 'deepmask')
  config.model = 'sharpmask'
  config.patch.hfreq = 0.0
  config.patch.label_size = 160
  config.momentum = 0.0
  config.weight_decay = 0.0
  config.schedule.boundaries = (50 * 4000, 80 * 4000)  # Epochs of 4000 batches.
  config.deepmask_checkpoint = 'runs/deepmask'
  return config
