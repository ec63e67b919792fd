"""Feature pyramid P3..P7 over ResNet C3..C5, as RetinaNet/FCOS build it.

maskrcnn-benchmark's `FPN` with `LastLevelP6P7` (EmbedMask's
R-50-FPN-RETINANET, `RETINANET.USE_C5: False`):

    inner5 = lateral5(C5)                    P5 = output5(inner5)
    inner4 = lateral4(C4) + up2(inner5)      P4 = output4(inner4)
    inner3 = lateral3(C3) + up2(inner4)      P3 = output3(inner3)
    P6 = p6(P5)    (3x3, stride 2)
    P7 = p7(relu(P6))    (3x3, stride 2)

Laterals are 1x1 convs, outputs and P6/P7 3x3 convs with zero padding 1;
up2 is nearest-neighbour x2, cropped to the lateral's size. No norm, no ReLU
except before P7. Every conv starts as maskrcnn-benchmark's
`conv_with_kaiming_uniform` and `LastLevelP6P7` initialise them:
kaiming_uniform(a=1) weights, i.e. U(+-sqrt(3 / fan_in)), and zero biases.
Layouts: NHWC activations, HWIO kernels.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.models.layers import upsample_nearest_2x

# kaiming_uniform_(a=1): gain sqrt(2 / (1 + a^2)) = 1, bound sqrt(3 / fan_in).
kaiming_uniform_a1 = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')


def _conv(features: int, kernel: int, stride: int, dtype, name: str) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), (stride, stride),
                 padding=((pad, pad), (pad, pad)),
                 kernel_init=kaiming_uniform_a1,
                 bias_init=nn.initializers.zeros, dtype=dtype, name=name)


class FPN(nn.Module):
  """P3..P7 from C3, C4, C5.

  Attributes:
    channels: channels of every level (256).
  Variables: 'lateral{3,4,5}' (1x1), 'output{3,4,5}', 'p6', 'p7' (3x3).
  """
  channels: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, c3: jax.Array, c4: jax.Array,
               c5: jax.Array) -> list[jax.Array]:
    """[B, H/8, W/8, *], [B, H/16, ...], [B, H/32, ...] -> [P3, ..., P7].

    P_l is [B, H_l, W_l, channels] with H_l = H / 2^l for l <= 5, and
    ceil(H_{l-1} / 2) for P6, P7 (fcos_geometry.level_shapes).
    """
    inner = _conv(self.channels, 1, 1, self.dtype, 'lateral5')(c5)
    outputs = [_conv(self.channels, 3, 1, self.dtype, 'output5')(inner)]
    for level, c in ((4, c4), (3, c3)):
      lateral = _conv(self.channels, 1, 1, self.dtype, f'lateral{level}')(c)
      top_down = upsample_nearest_2x(inner)
      inner = lateral + top_down[:, :lateral.shape[1], :lateral.shape[2]]
      outputs.insert(0, _conv(self.channels, 3, 1, self.dtype,
                              f'output{level}')(inner))
    p6 = _conv(self.channels, 3, 2, self.dtype, 'p6')(outputs[-1])
    p7 = _conv(self.channels, 3, 2, self.dtype, 'p7')(nn.relu(p6))
    return outputs + [p6, p7]


def fpn_inputs(features: dict[str, jax.Array]) -> Sequence[jax.Array]:
  """C3, C4, C5 of a four-layer Trunk's feature dict: layer2..layer4."""
  return features['layer2'], features['layer3'], features['layer4']
