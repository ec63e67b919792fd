"""Our Flax models on the interpreter's NCHW inputs, and the differences.

The tests and experiments/convert_full_size.py compare converted models with
`torch_reference` through these.
"""

import jax.numpy as jnp
import numpy as np

from deepmask_jax.families import build_model
from deepmask_jax.models import Trunk

from .torch_reference import relative_error

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
                depths=config.trunk.depths, expansion=config.trunk.expansion)
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
