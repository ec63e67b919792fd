"""Our Flax models on the interpreter's NCHW inputs, and the differences.

The tests and experiments/convert_full_size*.py compare converted models with
`torch_reference` (DeepMask, SharpMask, ResNet) and `embedmask_reference`
through these.
"""

import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.families import build_model
from deepmask_jax.models import Trunk
from deepmask_jax.testing import embedmask_reference
from deepmask_jax.testing.torch_reference import relative_error

# Trunk feature -> 0-based index of the top-level Torch module that outputs it.
TRUNK_FEATURE_MODULES = {'conv1': 2, 'layer1': 4, 'layer2': 5, 'layer3': 6,
                         'layer4': 7}


def _nhwc(images_nchw):
  return jnp.asarray(images_nchw.transpose(0, 2, 3, 1), jnp.float32)


def trunk_errors(variables, config, images_nchw, torch_outputs,
                 padding=None) -> dict:
  """Relative errors of our Trunk's features against the Torch module outputs.

  Args:
    variables: {'params': {'trunk': ...}, 'constants': {'trunk': ...}}.
    config: the converted config (its `trunk` fields build the Trunk).
    images_nchw: [B, 3, H, W] inputs.
    torch_outputs: the outputs of the top-level Torch modules through the
      trunk's last layer (7 through layer3, 8 through layer4).
    padding: the Trunk's padding; None takes the converted config's.
  """
  trunk = Trunk(padding=padding or config.trunk.padding,
                stem_width=config.trunk.stem_width, widths=config.trunk.widths,
                depths=config.trunk.depths, expansion=config.trunk.expansion,
                stride_in_1x1=config.trunk.stride_in_1x1,
                norm=config.trunk.norm)
  features = trunk.apply({c: tree['trunk'] for c, tree in variables.items()},
                         _nhwc(images_nchw))
  return {name: relative_error(np.asarray(features[name]).transpose(0, 3, 1, 2),
                               torch_outputs[index])
          for name, index in TRUNK_FEATURE_MODULES.items() if name in features}


def apply_model(conversion, images_nchw, **kwargs):
  """The converted model's patch form on [B, 3, wSz, wSz] patches."""
  model = build_model(conversion.config)
  return model.apply(conversion.variables, _nhwc(images_nchw), **kwargs)


def patch_errors(outputs, torch_mask, torch_score) -> dict:
  """Relative errors of {'mask', 'score'} against Torch's [B, S*S] and [B, 1]."""
  return {'mask': relative_error(
              np.asarray(outputs['mask']).reshape(torch_mask.shape), torch_mask),
          'score': relative_error(outputs['score'], torch_score[:, 0])}


def _flat(per_level):
  """[B, C, H_l, W_l] per level -> [B, L, C] (our location order)."""
  return np.concatenate([x.reshape(x.shape[0], x.shape[1], -1)
                         .transpose(0, 2, 1) for x in per_level], axis=1)


_COMPILED = {}


def _apply_compiled(config, variables, images_nchw):
  """The model of `config` on the images, compiled once per geometry (the
  tests share one: op-by-op dispatch, or a compile per test, is slow)."""
  key = config.to_json()
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(build_model(config).apply)
  return _COMPILED[key](variables, _nhwc(images_nchw))


def embedmask_errors(conversion, state, images, version=3,
                     geometry=embedmask_reference.Geometry()) -> dict:
  """Relative error of every output of the converted EmbedMask against
  `embedmask_reference.embedmask_forward` on [B, 3, H, W] images."""
  ours = _apply_compiled(conversion.config, conversion.variables, images)
  theirs = embedmask_reference.embedmask_forward(state, images, geometry,
                                                 version=version)
  errors = {name: relative_error(ours[name], _flat(theirs[name]))
            for name in ('cls_logits', 'box_regression', 'proposal_embedding',
                         'proposal_margin')}
  errors['centerness'] = relative_error(ours['centerness'],
                                        _flat(theirs['centerness'])[..., 0])
  errors['pixel_embedding'] = relative_error(
      ours['pixel_embedding'], theirs['pixel_embedding'].transpose(0, 2, 3, 1))
  return errors
