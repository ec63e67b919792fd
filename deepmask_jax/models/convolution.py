"""Convolutions, each computed in the form XLA runs fastest for its shape.

Layouts: activations NHWC, kernels HWIO. Every conv here holds exactly the
variables of `flax.linen.Conv` ('kernel' [k, k, C, O], 'bias' [O]), so
variable trees, checkpoints and converted weights do not depend on the form.
On the CPU backend `Conv` picks the form from the shape:
  * 1 x 1 kernels (any stride): a matmul over channels (`channel_matmul`);
  * large kernels (k >= LARGE_KERNEL) at stride 1: over an input of exactly
    one window (DeepMask's 10 x 10 embedding on training patches) one
    [B, k*k*C] x [k*k*C, O] matmul; on larger maps (the embedding on whole
    images) the k column shifts stacked on the channel axis, then k matmuls;
  * 3 x 3 stride-1 convs with tiny C * O (SharpMask's last refinement convs)
    on 2x2 blocks (`block_conv`); those that read a nearest-2x upsampled map
    (`upsampled`) on the map itself (`phase_conv`);
  * the rest (the trunk's 3 x 3 and 7 x 7 convs): `lax.conv_general_dilated`.
Why: on XLA's CPU backend the alternatives are 3-25x faster than its
convolution for those shapes, gradients above all (experiments/README.md,
"CPU speed"). On other backends (GPU, TPU) those forms are unmeasured, so
every conv there is XLA's own `lax.conv_general_dilated` (the upsampled-input
conv on the upsampled map) until a measurement on that backend says
otherwise: experiments/device_check.sh times both (`forms_of('cpu')`).
The backend is jax.default_backend() when the conv is traced.
Matmul forms accumulate in float32 whatever `dtype` is.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.models.backend_forms import backend
from deepmask_jax.models.layers import torch_default_init, upsample_nearest_2x

# Backends on which the speed forms were measured faster than XLA's conv.
SPEED_FORM_BACKENDS = ('cpu',)
# Smallest kernel side computed as column shifts + matmuls at stride 1.
LARGE_KERNEL = 5
PADDINGS = ('symmetric', 'zero')
# Largest C_in * C_out of a 3x3 conv computed on 2x2 blocks (measured: 4->2,
# 4->4 and 8->4 convs 3-5x faster so; 16->8 not faster).
BLOCK_CHANNELS = 32


def _block_taps() -> np.ndarray:
  """Output row 2a + p of a 3x3 VALID conv reads input rows 2a + p + d,
  d = 0..2: row (p + d) % 2 of block a + (p + d) // 2. taps[p, t, i, d] = 1
  where kernel row d reads row i of block a + t."""
  taps = np.zeros((2, 2, 2, 3), np.float32)
  for p in range(2):
    for d in range(3):
      taps[p, (p + d) // 2, (p + d) % 2, d] = 1.0
  return taps


BLOCK_TAPS = _block_taps()
# Output row 2a + p of a 3x3 conv over a nearest-2x-upsampled map reads rows
# a-1, a, a (p = 0) or a, a, a+1 (p = 1) of the map before upsampling:
# PHASE_TAPS[p, t, d] = 1 where kernel row d lands on row offset t - 1.
PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                       [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], np.float32)


@jax.custom_vjp
def channel_matmul(x: jax.Array, kernel: jax.Array,
                   bias: Optional[jax.Array]) -> jax.Array:
  """x [..., C] @ kernel [C, O] (+ bias [O]) -> [..., O] float32: a 1 x 1 conv.

  Its gradient computes all three gradients with matmuls on the incoming
  cotangent (the bias gradient as ones @ cotangent). XLA's CPU backend would
  otherwise fuse the cotangent's whole elementwise chain (ReLU masks, frozen
  affines, residual sums) into the transposed copy behind the kernel
  gradient and into the bias gradient's reduction, reading ten arrays in
  strides each time: up to 0.2 s per layer in a ResNet-50 training step.
  """
  y = jnp.dot(x, kernel, preferred_element_type=jnp.float32)
  return y if bias is None else y + bias


def _channel_matmul_forward(x, kernel, bias):
  return channel_matmul(x, kernel, bias), (x, kernel, bias)


def _channel_matmul_backward(residuals, cotangent):
  x, kernel, bias = residuals
  rows = cotangent.reshape(-1, cotangent.shape[-1])
  dbias = None
  if bias is not None:
    # Eight rows of ones: a matmul, which XLA does not turn into a reduction.
    ones = jnp.ones((8, rows.shape[0]), rows.dtype)
    dbias = jnp.dot(ones, rows, preferred_element_type=jnp.float32)[0]
    dbias = dbias.astype(bias.dtype)
  rows = rows.astype(x.dtype)
  dx = jnp.dot(cotangent.astype(x.dtype), kernel.T,
               preferred_element_type=jnp.float32)
  # x^T @ cotangent: only x is transposed (a plain copy), never the chain.
  dkernel = jnp.dot(x.reshape(-1, x.shape[-1]).T, rows,
                    preferred_element_type=jnp.float32)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype), dbias


channel_matmul.defvjp(_channel_matmul_forward, _channel_matmul_backward)


def column_shift_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID stride-1 conv of x [B, H, W, C] with kernel [k, k, C, O]: the k
  column shifts stacked on channels ([B, H, W', k*C]), then k matmuls, one
  per row shift, summed: [B, H-k+1, W-k+1, O] float32."""
  k, _, channels, features = kernel.shape
  out_h, out_w = x.shape[1] - k + 1, x.shape[2] - k + 1
  # columns[..., j*C + c] = x[:, :, w + j, c]: kernel[i] flattens alike.
  columns = jnp.concatenate([x[:, :, j:j + out_w] for j in range(k)], axis=-1)
  return sum(channel_matmul(columns[:, i:i + out_h],
                            kernel[i].reshape(k * channels, features), None)
             for i in range(k))


def phase_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID 3x3 conv of the nearest-2x upsampled map, computed on the map itself.

  Args:
    x: [B, H + 2, W + 2, C], the map before upsampling, padded by 1 (zeros,
      or its edge pixels: either padding commutes with the upsampling).
    kernel: [3, 3, C, O].
  Returns:
    [B, 2H, 2W, O] = VALID conv of (upsample(map) padded by 1 alike): the
    four output phases as one conv with 4*O channels ([3, 3, C, 2, 2, O]
    phase kernels), then interleaved. Same products, a quarter of the
    positions: 2-4x faster on CPU for SharpMask's few-channel convs.
  """
  channels, features = kernel.shape[2:]
  taps = jnp.asarray(PHASE_TAPS, kernel.dtype)
  phases = jnp.einsum('pad,qbe,deco->abcpqo', taps, taps, kernel)
  return depth_to_space_2x(jax.lax.conv_general_dilated(
      x, phases.reshape(3, 3, channels, 4 * features), (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')))


def depth_to_space_2x(y: jax.Array) -> jax.Array:
  """[B, H, W, 2*2*O] (channels (row phase, column phase, O)) -> [B, 2H, 2W, O]."""
  batch, height, width, channels = y.shape
  y = y.reshape(batch, height, width, 2, 2, channels // 4)
  return y.transpose(0, 1, 3, 2, 4, 5).reshape(batch, 2 * height, 2 * width,
                                               channels // 4)


def block_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID 3x3 stride-1 conv of x [B, 2H + 2, 2W + 2, C] computed on 2x2
  blocks: a VALID 2x2 conv of the [B, H + 1, W + 1, 4C] block map with 4*O
  outputs (the four output phases), interleaved: [B, 2H, 2W, O]. 1.8x the
  products, but channel counts XLA's CPU convolution handles 3-5x faster
  when C * O is tiny (SharpMask's 8->4 ... 4->2 convs)."""
  batch, height, width, channels = x.shape
  features = kernel.shape[-1]
  blocks = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
  blocks = blocks.transpose(0, 1, 3, 2, 4, 5).reshape(
      batch, height // 2, width // 2, 4 * channels)
  taps = jnp.asarray(BLOCK_TAPS, kernel.dtype)
  block_kernel = jnp.einsum('ptid,quje,deco->tuijcpqo', taps, taps, kernel)
  y = jax.lax.conv_general_dilated(
      blocks, block_kernel.reshape(2, 2, 4 * channels, 4 * features), (1, 1),
      'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return depth_to_space_2x(y)


def symmetric_pad(x: jax.Array, pad: int) -> jax.Array:
  """Pads H and W of an NHWC array by copying edge pixels outward.

  Torch's `SpatialSymmetricPadding` (Matlab 'symmetric'): `cba|abcd`, not
  reflection (`dcb|abcd`).
  """
  if pad == 0:
    return x
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='symmetric')


class Conv(nn.Module):
  """A square conv with `padding` zeros on every side, in the fastest form.

  [B, H, W, C] -> [B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, features];
  the variables of `nn.Conv(features, (k, k), (s, s), ((p, p), (p, p)))`.
  With `upsampled` (3x3, stride 1), the conv reads the nearest-2x upsampled
  input: [B, 2(H + 2p - 2), 2(W + 2p - 2), features], the VALID conv of
  upsample(x padded by p) cropped by 1 (on CPU by `phase_conv`, without
  building the upsampled map).
  """
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  upsampled: bool = False
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, pad = self.kernel, self.padding
    batch, height, width, channels = x.shape
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, channels, self.features))
    bias = (self.param('bias', self.bias_init, (self.features,))
            if self.use_bias else None)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    form = self.form(channels, height + 2 * pad, width + 2 * pad)
    if form == 'matmul':
      # The bias goes into the matmul: its gradient is one too (see there).
      y = channel_matmul(x[:, ::self.stride, ::self.stride], kernel[0, 0],
                         bias)
    else:
      y = self._convolve(x, kernel, form)
      y = y if bias is None else y + bias
    return y.astype(self.dtype)

  def form(self, channels: int, height: int, width: int) -> str:
    """How to compute this conv on a padded height x width input on the
    tracing backend (module doc): 'lax' or 'upsampled_lax' off the CPU; on
    it 'matmul', 'phase', 'block', 'lax', 'window' or 'columns'."""
    k, stride = self.kernel, self.stride
    if self.upsampled and (k, stride) != (3, 1):
      raise ValueError(f'an upsampled input needs a 3x3 stride-1 conv, got '
                       f'{k}x{k} stride {stride}')
    if backend() not in SPEED_FORM_BACKENDS:
      return 'upsampled_lax' if self.upsampled else 'lax'
    if self.upsampled:
      return 'phase'
    if k == 1 and self.padding == 0:
      return 'matmul'
    if ((k, stride) == (3, 1) and channels * self.features <= BLOCK_CHANNELS
        and height % 2 == 0 and width % 2 == 0):
      return 'block'
    if stride != 1 or k < LARGE_KERNEL:
      return 'lax'
    return 'window' if (height, width) == (k, k) else 'columns'

  def _convolve(self, x: jax.Array, kernel: jax.Array, form: str) -> jax.Array:
    """The conv without bias, in the form `form`."""
    pad = self.padding
    if form == 'lax':  # XLA pads inside the conv: no padded copy.
      return jax.lax.conv_general_dilated(
          x, kernel, (self.stride,) * 2, ((pad, pad), (pad, pad)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if form == 'upsampled_lax':
      # upsample(padded by 1) cropped by 1 = upsample(map) padded by 1, for
      # zero and edge padding alike (phase_conv).
      upsampled = upsample_nearest_2x(padded)[:, 1:-1, 1:-1]
      return jax.lax.conv_general_dilated(
          upsampled, kernel, (1, 1), 'VALID',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if form == 'phase':
      return phase_conv(padded, kernel)
    if form == 'block':
      return block_conv(padded, kernel)
    if form == 'window':
      size = self.kernel * self.kernel * x.shape[-1]
      return channel_matmul(padded.reshape(x.shape[0], 1, 1, size),
                            kernel.reshape(size, self.features), None)
    return column_shift_conv(padded, kernel)


class PaddedConv(nn.Module):
  """A square conv that keeps the size (at stride 1): pad, then VALID conv.

  Attributes:
    features: output channels.
    kernel: square kernel size; the padding is (kernel - 1) // 2 on every side.
    stride: square stride.
    padding: 'symmetric', Torch's `SpatialSymmetricPadding` (DeepMask's
      createTrunk and SharpMask pad so), or 'zero', the standard padding of
      Torch/PyTorch convs (ImageNet networks, EmbedMask).
    upsampled: the conv reads `upsample_nearest_2x(x)` (3x3 only): computed
      on x itself (`phase_conv`); symmetric padding by 1 copies edge pixels,
      which commutes with the upsampling.
    kernel_init: HWIO initialiser; bias follows `bias_init` (both default to
      Torch's, `torch_default_init`).
  The kernel and bias live under the submodule 'conv' whatever the padding, so
  one set of variables fits both.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: str = 'symmetric'
  use_bias: bool = True
  upsampled: bool = False
  kernel_init: Any = None
  bias_init: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.padding not in PADDINGS:
      raise ValueError(f'padding must be one of {PADDINGS}, got {self.padding!r}')
    fan_in = x.shape[-1] * self.kernel * self.kernel
    pad = (self.kernel - 1) // 2
    if self.padding == 'symmetric':
      x, pad = symmetric_pad(x, pad), 0
    return Conv(self.features, self.kernel, self.stride, pad, self.use_bias,
                self.upsampled, self.kernel_init or torch_default_init(fan_in),
                self.bias_init or torch_default_init(fan_in), self.dtype,
                name='conv')(x)
