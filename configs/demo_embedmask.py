"""A small EmbedMask trained on the synthetic dataset's six classes, on a CPU.

`python -m deepmask_jax.main --config=configs/demo_embedmask.py --workdir=runs/demo_embedmask`
generates the synthetic COCO-format dataset into data/synthetic on first use
(shared with the DeepMask demo), builds its TFDS files and trains. Same
targets, losses and inference as configs/embedmask.py, scaled down: a
one-block-per-layer trunk of widths 16..128, 32-channel FPN and towers, the
256-px images at 192 px. The trunk trains from scratch, so instead of frozen
BN (the identity without ImageNet statistics) it has trainable GroupNorm
(`trunk.norm = 'group'`, models/resnet.py), and it uses Adam; the stem and
layer1 train too. The recipe (batch 4 for 4200 steps at lr 2e-3, x0.1 at
3500) was chosen with experiments/embedmask_learning_curve.py
(experiments/README.md): GroupNorm doubled what 1200 steps at batch 8 reach,
batch 4 beat batch 8 and batch 2 for the same images, lr 2e-3 beat 1e-3 and
3e-3, one decay beat two, and 4200 steps reach segm/box AP 0.40 on
synthetic val in about 11 minutes on 2 CPU cores from a fresh clone,
dataset generation and evaluation included.
"""

from deepmask_jax.config_schema import sibling_config


def get_config():
  config = sibling_config(__file__, 'embedmask')
  config.trunk.stem_width = 16
  config.trunk.widths = (16, 32, 64, 128)
  config.trunk.depths = (1, 1, 1, 1)
  config.embedmask.fpn_channels = 32
  config.trunk.norm = 'group'
  config.embedmask.freeze_at = 0  # A from-scratch stem must learn too.

  config.detection.min_size = 192
  config.detection.max_size = 192
  config.detection.max_instances = 16

  demo = sibling_config(__file__, 'demo')  # The DeepMask demo's dataset.
  config.data = demo.data

  config.optimizer = 'adam'
  config.weight_decay = 0.0
  config.batch_size = 4
  config.schedule.learning_rates = (2e-3, 2e-4)
  config.schedule.reference_batch = 4
  config.schedule.warmup_steps = 200
  config.schedule.boundaries = (3500,)
  config.schedule.total_steps = 4200
  config.checkpoint_every_steps = 700
  config.eval_every_steps = 1400
  config.validation_images = 50  # Validation images per validation pass.
  config.log_every_steps = 50
  config.evaluation.max_images = 200  # All of synthetic val.
  return config
