"""The one error the converter raises for a file it cannot convert."""

from deepmask_jax.errors import InputError


class ConversionError(InputError):
  """A weights file that cannot be converted.

  The message is one line that names the problem and, where there is one, the
  module's path in the file (Lua-style, 1-based: `trunk.modules[5]...`) and
  its Torch type, so a user can find the module when printing the file in Lua.
  """
