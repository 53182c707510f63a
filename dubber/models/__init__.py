"""Networks (vqgan, syncnet, generator, gpen), their dimensions and the weights registry.

Importing this package does not import torch; import the submodules you need.
"""
