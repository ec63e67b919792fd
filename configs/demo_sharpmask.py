"""SharpMask on top of the demo DeepMask (run configs/demo.py first).

`python -m deepmask_jax.main --config=configs/demo_sharpmask.py --workdir=runs/demo_sharpmask`
freezes the DeepMask in runs/demo and trains the refinement on mask batches
with labels at the object window's full resolution (96 px here, 160 in the
paper config). Like the demo DeepMask it uses Adam, as its modules start
from scratch on a small CPU budget.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.model = 'sharpmask'
  config.deepmask_checkpoint = 'runs/demo'
  config.patch.hfreq = 0.0
  config.patch.label_size = config.patch.object_window
  config.num_epochs = 4  # 2000 steps; decays after 1000 and 1500.
  config.lr_boundaries_epochs = (2, 3)
  return config
