"""Training: corpus preparation and one trainer per model.

Imported lazily by ``dub prepare`` / ``dub train`` only; nothing on the inference path
imports this package.
"""
