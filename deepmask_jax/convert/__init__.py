"""Released weights -> our model directories.

`python -m deepmask_jax.convert --input FILE --out DIR` converts, by content,
the Lua Torch `.t7` files (fb.resnet.torch's ResNet-50 for
`config.trunk_init`, the released DeepMask / SharpMask `model.t7`), PyTorch
EmbedMask `.pth` checkpoints (zip and legacy containers) and Detectron's MSRA
ResNet `.pkl` (for `config.trunk_init`, stride in the 1x1 conv). No file
executes code: `.t7` is read with torchfile, pickles with an allow-list
unpickler. Imports no TensorFlow and no torch.
"""

from deepmask_jax.convert.converter import (Conversion, convert, convert_t7,
                                            read_t7, read_weights)
from deepmask_jax.convert.errors import ConversionError
