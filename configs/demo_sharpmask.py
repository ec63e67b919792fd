"""SharpMask on top of the demo DeepMask (run configs/demo.py first).

`python -m deepmask_jax.main --config=configs/demo_sharpmask.py --workdir=runs/demo_sharpmask`
freezes the DeepMask in runs/demo and trains the refinement on mask batches
with labels at the object window's full resolution (96 px here, 160 in the
paper config). Like the demo DeepMask it uses Adam, as its modules start
from scratch on a small CPU budget, with km = 64 instead of 32: at km = 32 the
last refinement modules are 4 and 2 channels wide, and under Adam their ReLUs
die within a few hundred steps (the loss sticks above the average-mask level).
"""

from deepmask_jax.config_schema import sibling_config


def get_config():
  config = sibling_config(__file__, 'demo')
  config.model = 'sharpmask'
  config.deepmask_checkpoint = 'runs/demo'
  config.patch.hfreq = 0.0
  config.patch.label_size = config.patch.object_window
  config.refine.km = 64
  config.schedule.total_steps = 1500  # The rate drops after 1000.
  config.schedule.learning_rates = (5e-4, 2.5e-4, 1e-4)
  config.schedule.boundaries = (1000, 1500)
  config.eval_every_steps = 1500
  return config
