"""DeepMask, the reference recipe ("DeepMask-ours", train.lua defaults) on COCO 2017.

ResNet-50 trunk through layer3, 192-px patches, batch 32, SGD momentum 0.9,
wd 5e-4, lr 1e-3 / 5e-4 / 1e-4 at epochs 50 / 120 of 4000 batches, 300 epochs.
Start from ImageNet weights with
`--config.trunk_init=<dir from python -m deepmask_jax.convert --t7 resnet-50.t7>`.
The reference trained on COCO 2014; for it set config.data.* to the 2014 files.

Mixed precision: `--config.dtype=bfloat16` keeps the parameters, optimiser
state, losses and logits in float32 and runs the convolutions and matmuls in
bf16 (the SharpMask, demo and eval/propose paths read the same field; an
evaluation may pick its own dtype: `--config.mode=eval --config.dtype=...`).
Worth it on GPUs/TPUs; CPUs have no fast bf16 convolutions.
"""

from deepmask_jax.config_schema import get_config as base_config


def get_config():
  config = base_config()
  config.model = 'deepmask'
  config.data.name = 'coco2017'
  config.data.root = 'data/coco'
  return config
