"""EmbedMask: the FCOS-style model, its geometry, targets and losses, the
full-image detection sampler and pipeline, post-processing (device NMS, mask
maps), pasting and the `InstanceSegmenter`. `family.py` binds them to the
shared trainer, evaluator and CLIs (families/base.Family). Imports no other
family.
"""
