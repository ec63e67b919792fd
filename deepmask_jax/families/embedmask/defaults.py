"""EmbedMask's config sections: `config.embedmask`, `config.detection`, and
its `config.schedule`.

The schema (deepmask_jax/config_schema.py) takes the first two from here;
configs/embedmask.py sets the schedule (the schema's is DeepMask's).
"""

import ml_collections


def embedmask_defaults() -> ml_collections.ConfigDict:
  """Model, loss and inference settings of EmbedMask (the V3 yaml values)."""
  cfg = ml_collections.ConfigDict()
  cfg.num_classes = 80  # Set from the dataset's categories when training.
  # The dataset's category of each contiguous label (filled when training,
  # saved with the model: results JSON and overlays use them).
  cfg.category_ids = ()
  cfg.category_names = ()
  cfg.embed_dim = 16  # D: 2 spatial + D - 2 free channels.
  cfg.fpn_channels = 256
  cfg.num_convs = 4  # Convs per head tower.
  cfg.norm_groups = 32  # GroupNorm groups of the towers (gcd with the channels).
  cfg.strides = (8, 16, 32, 64, 128)  # P3..P7.
  cfg.prior_prob = 0.01
  cfg.prior_margin = 2.0  # Margin bias: P = 0.5 at embedding distance 2.
  cfg.margin_reduce_factor = 32.0
  cfg.freeze_at = 2  # Stem and layer1 frozen (FREEZE_CONV_BODY_AT).
  # Targets and losses.
  cfg.scale_ranges = (64, 128, 256, 512)  # FPN_INTEREST_SPLIT.
  cfg.center_radius = 1.5
  cfg.sample_in_mask = True
  cfg.focal_alpha = 0.25
  cfg.focal_gamma = 2.0
  cfg.mask_loss_weight = 0.5
  # Inference.
  cfg.score_threshold = 0.05
  cfg.pre_nms_top_n = 1000  # Per level.
  cfg.nms_threshold = 0.6
  cfg.results_per_image = 100
  cfg.mask_threshold = 0.53  # Probability.
  cfg.mask_box_padding = 2  # Stride-4 cells around each box.
  # Optimiser groups (maskrcnn-benchmark's SOLVER): biases at this many times
  # the rate, with this weight decay (the rest: config.weight_decay).
  cfg.bias_lr_factor = 2.0
  cfg.weight_decay_bias = 0.0
  return cfg


def schedule_defaults() -> ml_collections.ConfigDict:
  """maskrcnn-benchmark's 1x schedule (SOLVER) as `config.schedule`: lr 0.01
  at batch 16 (linear in the batch), x0.1 at 60k and 80k of 90k steps,
  constant warmup at 1/3 for the first 500 updates."""
  cfg = ml_collections.ConfigDict()
  cfg.total_steps = 90000
  cfg.learning_rates = (0.01, 0.001, 0.0001)
  cfg.boundaries = (60000, 80000)
  cfg.warmup_steps = 500
  cfg.warmup_factor = 1.0 / 3
  cfg.reference_batch = 16
  cfg.epoch_steps = 4000  # Old epoch names only (deepmask/defaults.py).
  return cfg


def detection_defaults() -> ml_collections.ConfigDict:
  """Full-image batches: the reference's caffe2 input convention."""
  cfg = ml_collections.ConfigDict()
  cfg.min_size = 800  # Shorter side after resizing.
  cfg.max_size = 1333  # Longer side at most.
  cfg.flip = True  # Horizontal flip with probability 0.5 (training).
  cfg.max_instances = 100  # Ground truth padded (or cut) to this many.
  cfg.bgr = True  # Channel order fed to the network (caffe2 weights: BGR).
  cfg.pixel_mean = (102.9801, 115.9465, 122.7717)  # In the fed order, 0-255.
  cfg.pixel_std = (1.0, 1.0, 1.0)
  return cfg
