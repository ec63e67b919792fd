"""EmbedMask R-50-FPN 1x, the reference recipe (embed_mask_R50_1x.yaml) on COCO 2017.

ResNet-50 (zero padding, frozen BN, stem and layer1 frozen) + FPN P3-P7 +
EmbedMask V3 heads (D = 16). Images at shorter side 800 / longer at most
1333, horizontal flips. SGD momentum 0.9, lr 0.01 at batch 16 (linear in the
batch), biases x2 without weight decay, wd 1e-4, constant warmup x1/3 for 500
iterations, x0.1 at 60k and 80k of 90k iterations.

`python -m deepmask_jax.main --config=configs/embedmask.py --workdir=runs/em`
Start from ImageNet weights with
`--config.trunk_init=<dir from python -m deepmask_jax.convert --t7 resnet-50.t7>`:
fb.resnet.torch's ResNet-50 has its stride in the 3x3 conv, so this config
keeps `trunk.stride_in_1x1 = False`; the reference's own MSRA (Detectron)
weights put it in the 1x1 and keep a frozen BN after every conv (set
`--config.trunk.stride_in_1x1=True --config.trunk.norm=frozen_per_conv` for
those, docs/convert.md section 4).
"""

from deepmask_jax.config_schema import get_config as base_config
from deepmask_jax.families.embedmask.defaults import schedule_defaults


def get_config():
  config = base_config()
  config.model = 'embedmask'
  config.trunk.stem_width = 64
  config.trunk.widths = (64, 128, 256, 512)
  config.trunk.depths = (3, 4, 6, 3)
  config.trunk.stride_in_1x1 = False

  config.data.name = 'coco2017'
  config.data.root = 'data/coco'

  config.batch_size = 16
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.optimizer = 'sgd'
  config.schedule = schedule_defaults()  # The 1x schedule at batch 16.
  config.checkpoint_every_steps = 2500
  config.eval_every_steps = 10000
  config.validation_images = 500  # Per validation pass.
  config.log_every_steps = 20
  config.evaluation.max_images = 5000  # All of val2017.
  return config
