"""The configuration schema: every field the code reads, with the reference values.

`--config.x=...` overrides are checked against this fixed schema. The config
files under `configs/` (paper recipe, SharpMask, demo) start from
`get_config()` and change a few fields; the package itself imports only this
module, so an installed deepmask_jax never needs the `configs/` folder.
Each family's own sections come from its package (families/*/defaults.py).
"""

import importlib.util
import os

import ml_collections
from ml_collections.config_dict import placeholder

from deepmask_jax.families.deepmask.defaults import (inference_defaults,
                                                     schedule_defaults)
from deepmask_jax.families.embedmask.defaults import (detection_defaults,
                                                      embedmask_defaults)


def sibling_config(this_file: str, name: str) -> ml_collections.ConfigDict:
  """`get_config()` of the config file `name`.py beside `this_file`.

  Config files build on each other (configs/demo.py on configs/deepmask.py).
  ml_collections loads a config by path, from any working directory, so the
  sibling is loaded by path too rather than imported through sys.path.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(this_file)),
                      f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = 'deepmask'  # 'deepmask', 'sharpmask' or 'embedmask'.
  config.mode = 'train'  # 'train' or 'eval' (evaluate the latest checkpoint).
  config.seed = 0

  # ResNet trunk through layer3 (fb.resnet.torch layout, BN folded to constants).
  config.trunk = ml_collections.ConfigDict()
  config.trunk.stem_width = 64
  config.trunk.widths = (64, 128, 256)  # Bottleneck widths of layer1..3.
  config.trunk.depths = (3, 4, 6)  # Bottlenecks per layer.
  config.trunk.expansion = 4
  # MSRA/Detectron layout (EmbedMask's ImageNet weights): the stride of a
  # downsampling block sits in its first 1x1 conv instead of the 3x3.
  config.trunk.stride_in_1x1 = False
  # Padding of the 3x3/7x7 convs the trunk weights were trained with, as the
  # converter records it: 'zero' (an ImageNet ResNet) or 'symmetric' (DeepMask
  # files). The models fix their own: DeepMask/SharpMask pad symmetrically
  # (createTrunk), EmbedMask with zeros.
  config.trunk.padding = 'symmetric'
  # 'frozen' (BN as fixed affines, a block's last after the addition:
  # fb.resnet.torch's resnet-50.t7), 'frozen_per_conv' (a fixed affine after
  # every conv: MSRA .pkl/.pth files as the converter writes them) or 'group'
  # (trainable GroupNorm, for a trunk trained from scratch; models/resnet.py).
  config.trunk.norm = 'frozen'
  # Optional trunk initialisation: an orbax checkpoint written by
  # `python -m deepmask_jax.convert` from fb.resnet.torch `resnet-50.t7`.
  config.trunk_init = ''
  # Optional fine-tuning start: every variable that fits is read from a model
  # directory (e.g. a released EmbedMask `.pth` converted by
  # `python -m deepmask_jax.convert`) or a training workdir's best checkpoint;
  # the rest (say, class logits for another number of classes) stay fresh and
  # are named in the log. Applied after trunk_init.
  config.init_from = ''

  # DeepMask heads.
  config.head = ml_collections.ConfigDict()
  config.head.feature_channels = 128  # 1x1 conv after the crop.
  config.head.embedding = 512  # Shared vector read by both heads.
  config.head.score_hidden = 1024
  config.head.dropout = 0.5

  # Patch geometry (reference DataSampler): iSz=160, wSz=iSz+2*context=192.
  config.patch = ml_collections.ConfigDict()
  config.patch.object_window = 160  # iSz: region the mask covers.
  config.patch.context = 16  # Pixels of context each side: wSz = iSz + 2*context.
  config.patch.mask_size = 56  # oSz: native mask output.
  config.patch.label_size = 112  # gSz: label resolution (160 for SharpMask).
  config.patch.shift = 16  # Centre jitter, +-px in the patch.
  config.patch.scale_jitter = 0.25  # Scale jitter, +-log2 units.
  config.patch.negative_distance = 48  # Negatives: no object centre this close (px).
  config.patch.hfreq = 0.5  # P(score batch); the reference's `hfreq`.
  config.patch.flip = True
  config.patch.mean = (0.485, 0.456, 0.406)
  config.patch.std = (0.229, 0.224, 0.225)

  # Data: a COCO-format dataset turned into TFDS (see deepmask_jax/data).
  config.data = ml_collections.ConfigDict()
  config.data.name = 'coco2017'  # Dataset (TFDS config) name.
  config.data.root = 'data/coco'  # COCO layout root, see README.
  config.data.train_json = 'annotations/instances_train2017.json'
  config.data.train_images = 'train2017'
  config.data.val_json = 'annotations/instances_val2017.json'
  config.data.val_images = 'val2017'
  config.data.tfds_dir = ''  # Where the TFDS files go ('' = <root>/tfds).
  config.data.synthetic = False  # Generate the synthetic dataset into root if absent.
  config.data.synthetic_train_images = 0
  config.data.synthetic_val_images = 0
  config.data.synthetic_image_size = 0
  config.data.synthetic_seed = 0
  config.data.num_parallel_calls = -1  # tf.data.AUTOTUNE.
  config.data.prefetch = 4  # Batches prefetched on the host.

  # Optimisation (TrainerDeepMask): SGD momentum 0.9, wd 5e-4, lr steps.
  config.batch_size = 32  # Global batch, split over all devices.
  # The learning-rate schedule in steps, one section for every family
  # (DeepMask's here; configs/embedmask.py sets EmbedMask's 1x schedule).
  config.schedule = schedule_defaults()
  # Old names (config_renames.py): epochs of `maxload` batches, EmbedMask's
  # solver section.
  config.maxload = placeholder(int)
  config.num_epochs = placeholder(int)
  config.learning_rates = placeholder(tuple)
  config.lr_boundaries_epochs = placeholder(tuple)
  config.solver = old_solver_names()
  config.optimizer = 'sgd'  # 'sgd' (the reference) or 'adam' (from-scratch demos).
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16'.
  config.parallel = 'shard_map'  # 'shard_map' (jit) or 'pmap'.

  # Checkpoints, validation, logs.
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3
  config.eval_every_steps = 8000  # The reference validates every 2nd epoch.
  # Validation size in images (DeepMask/SharpMask: patches, run as whole
  # batches of batch_size: evalPerPatch's testmaxload 200 batches of 32).
  config.validation_images = 6400
  config.eval_batches = placeholder(int)  # Old name (config_renames.py).
  config.log_every_steps = 50
  # Val images whose predictions are drawn to TensorBoard at each validation
  # (family.prediction_images); 0 draws none.
  config.tensorboard_images = 4
  # Resuming a workdir with a config that differs from its checkpoint's in
  # more than cadence, length or evaluation fields (train/resume_check.py):
  # 'refuse' (one line naming the fields) or 'allow' (print them, go on).
  config.resume_changes = 'refuse'

  # Dense multi-scale proposals (deepmask_jax/families/deepmask/defaults.py).
  config.inference = inference_defaults()
  config.inference.num_proposals = placeholder(int)  # Old name.

  # Evaluation of a checkpoint (`--config.mode=eval`): per patch (evalPerPatch)
  # and per image (proposals + COCOeval AR, useCats=0, maxDets 10/100/1000).
  config.evaluation = ml_collections.ConfigDict()
  config.evaluation.per_patch = True
  config.evaluation.per_image = True
  config.evaluation.results_per_image = 1000
  config.evaluation.num_proposals = placeholder(int)  # Old name.
  config.evaluation.max_images = 5000  # The reference's "first 5k" val ids.
  config.evaluation.step = -1  # Checkpoint step; -1 = best validated, else latest.

  # SharpMask stage 2.
  config.deepmask_checkpoint = ''  # Workdir or checkpoint of a trained DeepMask.
  config.refine = ml_collections.ConfigDict()
  config.refine.km = 32  # Mask-encoding channels (also ks).

  # EmbedMask (reference_embedmask.md, V3 HEAD e9d6142). Its trunk is
  # config.trunk with four layers (configs/embedmask.py), zero padded.
  config.embedmask = embedmask_defaults()
  config.embedmask.detections_per_image = placeholder(int)  # Old name.
  # Full-image detection batches (EmbedMask): resize, canvases, ground truth.
  config.detection = detection_defaults()
  return config


def old_solver_names() -> ml_collections.ConfigDict:
  """Placeholders of the old `config.solver` fields (config_renames.py)."""
  cfg = ml_collections.ConfigDict()
  for name in ('base_lr', 'warmup_factor', 'gamma', 'bias_lr_factor',
               'weight_decay_bias'):
    cfg[name] = placeholder(float)
  for name in ('reference_batch', 'warmup_iters', 'max_iter'):
    cfg[name] = placeholder(int)
  cfg.steps = placeholder(tuple)
  return cfg
