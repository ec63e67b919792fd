"""Inference pieces every family uses: image reading, RLE, overlays, streaming.

No TensorFlow and, outside `images`, no JAX: the encoding worker processes
(inference/rle.py, numpy and pycocotools only) start without importing JAX.
Each family's own inference lives in its package (deepmask_jax/families/).
"""
