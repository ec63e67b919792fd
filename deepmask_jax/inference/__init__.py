"""Dense multi-scale DeepMask / SharpMask proposals (no TensorFlow needed)."""

from deepmask_jax.inference.api import (EncodedProposals, ProposalGenerator,
                                        Proposals)
