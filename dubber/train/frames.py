"""The corpus's frames as one flat index with T-frame windows, and batching over it."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from dubber.errors import InputError
from dubber.train.corpus import Segment


class FrameIndex:
    """Flat frame numbering over a list of segments, with T-frame windows.

    Attributes:
        offsets: shape = (n_segments + 1,), int64: first flat index of each segment.
    """

    def __init__(self, segments: list[Segment]):
        self.segments = segments
        self.offsets = np.cumsum([0] + [len(s) for s in segments])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, flat: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.offsets, flat, side="right") - 1)
        return s, int(flat - self.offsets[s])

    def crops(self, flat: np.ndarray, masked: bool = False) -> np.ndarray:
        out = []
        for f in flat.tolist():
            s, j = self.locate(f)
            seg = self.segments[s]
            out.append((seg.masked if masked else seg.crops)[j])
        return np.stack(out)

    def windows(self, frames: int) -> np.ndarray:
        """All (segment, start) pairs of ``frames`` consecutive frames, shape = (W, 2)."""
        pairs = [
            (s, j) for s, seg in enumerate(self.segments) for j in range(0, len(seg) - frames + 1)
        ]
        if not pairs:
            raise InputError(
                f"no segment has {frames} frames: the corpus is too short for a "
                f"{frames}-frame window"
            )
        return np.asarray(pairs, np.int64)



def batches(n: int, size: int) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))
