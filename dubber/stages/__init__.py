"""Pipeline stages: each is ``stage(chunk, models, cfg) -> chunk`` over one chunk."""
