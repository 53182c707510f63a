"""The unit of work of the render loop: a run of consecutive frames and what stages add.

A stage is a function ``stage(chunk, models, cfg) -> chunk``. Stages add to a chunk; the
full-resolution ``frames`` are changed in place only by paste-back, and only inside the
faces it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from dubber.media.frames import FrameBatch


@dataclass
class Chunk:
    """Consecutive frames of one video.

    Attributes:
        index: chunk number, 0-based.
        frame_indices: shape = (N,), int64: 0-based frame numbers in presentation order.
        pts: shape = (N,), int64: presentation timestamps in ``time_base`` units, relative to
            the video's first frame (so the first frame of the video has pts 0).
        time_base: seconds per pts unit.
        frames: the full-resolution frames, in the input's planar YUV layout (coded
            orientation: the video's display rotation is not applied).
        analysis: shape = (N, h, w, 3), uint8 RGB, or None: the reduced-size analysis copy
            (``media.analysis_scale`` of full size), coded orientation like ``frames``.
        faces: per frame, the selected faces to re-render (filled by the analysis lookup).
        extra: what later stages add (crops, codes, generated faces), keyed by stage.
    """

    index: int
    frame_indices: np.ndarray
    pts: np.ndarray
    time_base: Fraction
    frames: FrameBatch
    analysis: np.ndarray | None = None
    faces: list[list[Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame_indices)

    @property
    def times(self) -> np.ndarray:
        """Presentation times in seconds relative to the first frame, shape = (N,), float64."""
        return self.pts.astype(np.float64) * float(self.time_base)
