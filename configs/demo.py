"""A tiny DeepMask trained on the synthetic dataset, on a laptop CPU, in minutes.

`python -m deepmask_jax.main --config=configs/demo.py --workdir=runs/demo`
generates the synthetic COCO-format dataset into data/synthetic on first use
(2000 train / 200 val images of 256 px), builds its TFDS files, and trains.
Same architecture and recipe as the paper config, scaled down: a 1-block-per-
layer trunk of widths 16/32/64, a 96-px object window (128-px patches, 6x6
features), labels at the native 56 px, a 10-px jitter, batch 16. The trunk
trains from scratch (no ImageNet weights, BN folded to the identity), where
plain SGD stays stuck at the average mask: the demo uses Adam instead.
"""

from deepmask_jax.config_schema import sibling_config


def get_config():
  config = sibling_config(__file__, 'deepmask')
  config.trunk.stem_width = 16
  config.trunk.widths = (16, 32, 64)
  config.trunk.depths = (1, 1, 1)
  config.head.feature_channels = 32
  config.head.embedding = 128
  config.head.score_hidden = 128

  config.patch.object_window = 96
  config.patch.label_size = 56
  config.patch.shift = 10

  config.data.name = 'synthetic'
  config.data.root = 'data/synthetic'
  config.data.synthetic = True
  config.data.train_json = 'annotations/instances_train.json'
  config.data.train_images = 'train'
  config.data.val_json = 'annotations/instances_val.json'
  config.data.val_images = 'val'
  config.data.synthetic_train_images = 2000
  config.data.synthetic_val_images = 200
  config.data.synthetic_image_size = 256

  config.optimizer = 'adam'
  config.weight_decay = 0.0
  config.batch_size = 16
  config.schedule.total_steps = 4000
  config.schedule.learning_rates = (2e-3, 1e-3, 2.5e-4)
  config.schedule.boundaries = (3000, 3500)
  config.schedule.epoch_steps = 500  # Its old maxload (config_renames.py).
  config.checkpoint_every_steps = 500
  config.eval_every_steps = 2000
  config.validation_images = 320  # 20 batches of 16 patches.
  config.log_every_steps = 50
  return config
