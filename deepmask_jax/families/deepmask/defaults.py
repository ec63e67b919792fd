"""DeepMask's defaults: the `config.inference` and `config.schedule` sections.

The schema (deepmask_jax/config_schema.py) takes its `inference` section and
its `schedule` section (DeepMask's, the default model's) from here. Configs
saved without an `inference` section (older checkpoints, converted `.t7`
models) still work: the proposal code falls back to these values field by
field; one without `schedule` gets it from its old fields
(config_renames.py).
"""

import ml_collections

EPOCH = 4000  # Batches per epoch of the reference (train.lua's maxload).


def inference_defaults() -> ml_collections.ConfigDict:
  """Reference inference values (evalPerImage / computeProposals)."""
  cfg = ml_collections.ConfigDict()
  # Pyramid: scales 2^scale_min ... 2^scale_max in steps of 2^scale_step;
  # `zoom` extends the pyramid up to 2^zoom_scale_max (the reference's
  # "Zoom" variant; its runtime roughly doubles).
  cfg.scale_min = -2.5
  cfg.scale_max = 0.5
  cfg.scale_step = 0.5
  cfg.zoom = False
  cfg.zoom_scale_max = 1.0
  cfg.results_per_image = 1000
  cfg.mask_threshold = 0.2  # Probability; masks are cut at logit(0.2).
  # Padded canvases are rounded up to multiples of this many pixels per side,
  # so a pass over many image sizes compiles few shapes: over coco_tiny val
  # 24 canvas shapes at 128 px (+18% pixels on 640x480), 46 at 64 px (+8%).
  cfg.bucket_multiple = 128
  # Images whose longer side exceeds this are first downscaled (antialiased)
  # to it; masks are still pasted at the original resolution.
  cfg.max_image_side = 1280
  cfg.max_batch = 8  # Canvases of one bucket run together, up to this many.
  cfg.decode_chunk = 128  # Windows per mask-head / refinement call.
  # Elements (masks x canvas pixels) pasted per call; bounds pasting memory.
  cfg.paste_budget = 1 << 26
  cfg.use_deepmask_masks = False  # SharpMask only: the reference's `-dm`.
  # Streaming (`ProposalGenerator.stream`): images whose pyramid levels share
  # device calls (same-shape canvases of these images run as one call).
  cfg.images_per_call = 4
  # Canvases of one call run one by one inside it (lax.map): results do not
  # depend on which images share a call. False: one real batch (faster on
  # accelerators for small canvases; differs in the last bit).
  cfg.batch_invariant = True
  cfg.prepare_threads = 2  # Host threads reading, resizing and padding.
  cfg.prefetch_images = 8  # Images prepared ahead of the device, at most.
  # Processes RLE-encoding masks (pycocotools holds the GIL: threads would
  # not overlap); 0 encodes on the calling thread.
  cfg.encode_workers = 2
  return cfg


def schedule_defaults() -> ml_collections.ConfigDict:
  """TrainerDeepMask's schedule: lr 1e-3, 5e-4 after epoch 50, 1e-4 after
  epoch 120, 300 epochs, an epoch being 4000 batches (train.lua's maxload).

  The fields of `config.schedule`, one meaning for every family (read by
  train/optimizer.py `step_schedule` and each family's `total_steps`).
  """
  cfg = ml_collections.ConfigDict()
  cfg.total_steps = 300 * EPOCH
  cfg.learning_rates = (1e-3, 5e-4, 1e-4)  # One per interval (reference_batch).
  cfg.boundaries = (50 * EPOCH, 120 * EPOCH)  # Steps where the next rate starts.
  # Constant warmup (maskrcnn-benchmark): the first warmup_steps updates run
  # at warmup_factor x the rate; 0 steps = none.
  cfg.warmup_steps = 0
  cfg.warmup_factor = 1.0
  # Batch the rates are given at: they scale linearly to config.batch_size
  # (rate x batch_size / reference_batch); 0 = used as given.
  cfg.reference_batch = 0
  # Batches in one epoch of the config's old epoch-based names (maxload):
  # read only to convert an old num_epochs / lr_boundaries_epochs / maxload
  # given to this config as it was meant (config_renames.py); it goes with
  # them in the next release.
  cfg.epoch_steps = EPOCH
  return cfg


def inference_config(config, **overrides) -> ml_collections.ConfigDict:
  """`inference_defaults()` updated by `config.inference` and `overrides`.

  Args:
    config: the model's ConfigDict; its optional `inference` sub-dict wins
      over the defaults.
    **overrides: values that win over both (None means "keep").
  """
  cfg = inference_defaults()
  given = config.get('inference', None) if config is not None else None
  if given is not None:
    for name in cfg.keys():
      if name in given:
        cfg[name] = given[name]
  for name, value in overrides.items():
    if name not in cfg:
      raise KeyError(f'unknown inference setting {name!r}')
    if value is not None:
      cfg[name] = value
  return cfg
