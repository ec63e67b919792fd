"""Dense multi-scale DeepMask / SharpMask proposals (no TensorFlow needed).

The public classes load on first use, so that the encoding worker processes
(inference/rle.py, numpy and pycocotools only) start without importing JAX.
"""

_PUBLIC = ('EncodedProposals', 'ProposalGenerator', 'Proposals')


def __getattr__(name):
  if name in _PUBLIC:
    from deepmask_jax.inference import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
