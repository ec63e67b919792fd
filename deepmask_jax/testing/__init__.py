"""Reference helpers shared by the tests and experiments/: writers of Torch7
`.t7`, PyTorch `.pth` and Detectron `.pkl` files, numpy interpreters of the
reference models, and comparisons of converted models against them.

    t7_writer            the Torch7 binary format (the inverse of convert/t7_file)
    torch_trees          module trees shaped like the released DeepMask,
                         SharpMask and ResNet `.t7` files
    torch_reference      a numpy interpreter of those trees
    pth_writer           PyTorch zip/legacy `.pth` and Detectron `.pkl` files
    embedmask_reference  maskrcnn-benchmark's EmbedMask state dicts and a numpy
                         forward pass
    compare              our converted models against the references

No production module imports this package (tests/test_layering.py keeps it
so); it sits on top of the families, like the entry points.
"""
