"""A small EmbedMask trained on the synthetic dataset's six classes, on a CPU.

`python -m deepmask_jax.main --config=configs/demo_embedmask.py --workdir=runs/demo_embedmask`
generates the synthetic COCO-format dataset into data/synthetic on first use
(shared with the DeepMask demo), builds its TFDS files and trains. Same
architecture, targets, losses and inference as configs/embedmask.py, scaled
down: a one-block-per-layer trunk of widths 16..128, 32-channel FPN and
towers, the 256-px images at 192 px, batch 8, 1200 steps (about 10 minutes
on 2 CPU cores, 0.5 s a step). The trunk trains from scratch (frozen BN is
the identity), so, as the DeepMask demo, it uses Adam; the stem and layer1
still stay frozen as in the paper recipe.
"""

from deepmask_jax.config_schema import sibling_config


def get_config():
  config = sibling_config(__file__, 'embedmask')
  config.trunk.stem_width = 16
  config.trunk.widths = (16, 32, 64, 128)
  config.trunk.depths = (1, 1, 1, 1)
  config.embedmask.fpn_channels = 32
  config.embedmask.freeze_at = 0  # A from-scratch stem must learn too.

  config.detection.min_size = 192
  config.detection.max_size = 192
  config.detection.max_instances = 16

  demo = sibling_config(__file__, 'demo')  # The DeepMask demo's dataset.
  config.data = demo.data

  config.optimizer = 'adam'
  config.weight_decay = 0.0
  config.batch_size = 8
  config.solver.base_lr = 1e-3
  config.solver.reference_batch = 8
  config.solver.warmup_iters = 100
  config.solver.steps = (900, 1100)
  config.solver.max_iter = 1200
  config.checkpoint_every_steps = 300
  config.eval_every_steps = 600
  config.validation_images = 50  # Validation images per validation pass.
  config.log_every_steps = 50
  config.evaluation.max_images = 200  # All of synthetic val.
  return config
