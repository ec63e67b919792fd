"""Legacy Lua Torch `.t7` weights -> our model directories.

`python -m deepmask_jax.convert --t7 FILE --out DIR` converts the
fb.resnet.torch ResNet-50 (`resnet-50.t7`, for `config.trunk_init`) and the
released DeepMask / SharpMask `model.t7` files (for the proposal CLI). Reading
uses torchfile and never executes code from the file. Imports no TensorFlow.
"""

from deepmask_jax.convert.converter import Conversion, convert_t7, read_t7
from deepmask_jax.convert.errors import ConversionError
