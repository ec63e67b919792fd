"""What every trunk converter produces: our Trunk's variables and geometry."""

import dataclasses


@dataclasses.dataclass
class TrunkVariables:
  """Our Trunk's converted variables and the geometry they imply.

  params / constants: the Trunk's 'params' and 'constants' trees (HWIO
  kernels, float32). stem_width, widths, depths, expansion: as the Trunk's
  attributes of the same names.
  """
  params: dict
  constants: dict
  stem_width: int
  widths: tuple
  depths: tuple
  expansion: int

  def geometry(self) -> str:
    return (f'stem {self.stem_width}, widths {self.widths}, depths '
            f'{self.depths}, expansion {self.expansion}')
