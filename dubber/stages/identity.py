"""The pass-through stage: returns the chunk unchanged."""

from __future__ import annotations

from dubber.chunk import Chunk
from dubber.config import Config


def identity(chunk: Chunk, models: object, cfg: Config) -> Chunk:
    """Leave every frame as decoded (the render loop then re-encodes and muxes)."""
    return chunk
