"""Cue stage: the driver's mouth for each dubbed face, for a generator with ``cue_dims`` 3.

Writes ``cues`` (the run's table, :func:`dubber.mouth.target.cue_table`, made once before
the first chunk); the generate stage looks each face up in it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from dubber.chunk import Chunk
from dubber.config import Config


class CueStage:
    """A render stage ``stage(chunk, models, cfg) -> chunk`` that hands the generate stage
    the run's mouth cues.

    Args:
        table: (frame, track id) -> (3,) float32; filled by the caller once the analysis
            is known (empty until then).
    """

    def __init__(self, table: Mapping[tuple[int, int], np.ndarray] | None = None) -> None:
        self.table = dict(table or {})

    def __call__(self, chunk: Chunk, models: object, cfg: Config) -> Chunk:
        chunk.cues = self.table
        return chunk
