"""COCO-format input: json validation, the synthetic dataset, the TFDS builder.

Only `tfds_coco` (and the input pipeline built on it) imports TensorFlow;
`coco_json` and `synthetic` do not. Nothing is imported here, so importing the
package stays light.
"""
