"""SharpMask stage 2 (TrainerSharpMask): refine a trained, frozen DeepMask.

Mask batches only (hfreq 0), labels at 160 px, plain SGD (no momentum, no
weight decay) on the refinement modules. The learning rate decays as the
reference intended, 1e-3 / 5e-4 / 1e-4 at epochs 50 / 80; the reference's
own schedule never decays (see docs/reference_fixes.md).
Set `--config.deepmask_checkpoint=<DeepMask workdir or converted model.t7>`.
"""

import os
import sys

# Configs build on each other; make `configs` importable however this file is
# loaded (ml_collections loads it by path, from any working directory).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import deepmask  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config():
  config = deepmask.get_config()
  config.model = 'sharpmask'
  config.patch.hfreq = 0.0
  config.patch.label_size = 160
  config.momentum = 0.0
  config.weight_decay = 0.0
  config.lr_boundaries_epochs = (50, 80)
  config.deepmask_checkpoint = 'runs/deepmask'
  return config
