"""Pipeline stages: one module per stage, each a function ``stage(chunk, models, cfg) -> chunk``."""
