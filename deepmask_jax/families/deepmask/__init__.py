"""DeepMask and SharpMask: patch models, their patch sampler and input pipeline,
losses, multi-scale proposals (pyramid, windows, pasting) and the
`ProposalGenerator`. `family.py` binds them to the shared trainer, evaluator
and CLIs (families/base.Family). Imports no other family.

The public classes load on first use, so importing a module of this package
(e.g. `defaults`, read by the config schema) stays light.
"""

_PUBLIC = {'EncodedProposals': 'deepmask_jax.inference.images',
           'ProposalGenerator': 'deepmask_jax.families.deepmask.generator',
           'Proposals': 'deepmask_jax.families.deepmask.generator'}


def __getattr__(name):
  if name in _PUBLIC:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_PUBLIC[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
