"""Shot cuts, with PySceneDetect's AdaptiveDetector fed the analysis frames we already decode.

Why PySceneDetect and this detector: it is the maintained reference implementation, it
takes frames as arrays (so the analysis pass decodes once), and AdaptiveDetector compares
each frame's HSV content change with the average change of its neighbours, which keeps
fast camera moves and flashes from being taken for cuts better than a fixed threshold
(ContentDetector). A cut is reported ``window_width`` (2) frames after it happens; callers
that act on cuts online (the tile scan) simply see it 2 frames late, and the tracks are
split at the exact cut frames afterwards.
"""

from __future__ import annotations

import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode

# PySceneDetect's content score is computed on whatever size it is given; this width keeps
# the HSV conversion cheap and the score comparable across input sizes.
SCORE_WIDTH = 320


class ShotDetector:
    """Online shot-cut detection over consecutive frames.

    Args:
        fps: frame rate (only used for PySceneDetect's timecodes).
        threshold: AdaptiveDetector's ``adaptive_threshold``.
        min_shot_frames: shortest shot, frames.
    """

    def __init__(self, fps: float, threshold: float = 3.0, min_shot_frames: int = 8) -> None:
        self._fps = float(fps)
        self._det = AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=min_shot_frames)
        self.cuts: list[int] = []

    def push(self, frame_index: int, image: np.ndarray) -> int | None:
        """Feed one frame; returns the index of a cut found (the first frame of a new shot),
        or None.

        Args:
            frame_index: 0-based, consecutive.
            image: shape = (h, w, 3), uint8 RGB.
        """
        import cv2

        h, w = image.shape[:2]
        if w > SCORE_WIDTH:
            image = cv2.resize(image, (SCORE_WIDTH, max(1, round(h * SCORE_WIDTH / w))),
                               interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(image[..., ::-1])
        found = self._det.process_frame(FrameTimecode(frame_index, fps=self._fps), bgr)
        new = [tc.frame_num for tc in found if tc.frame_num > 0]
        self.cuts.extend(new)
        return new[-1] if new else None


def shots_from_cuts(cuts: list[int], n_frames: int) -> list[tuple[int, int]]:
    """Shots as inclusive (first, last) frame ranges covering ``0 .. n_frames - 1``.

    Args:
        cuts: first frames of every shot but the first, any order.
    """
    starts = [0] + sorted(c for c in set(cuts) if 0 < c < n_frames)
    ends = starts[1:] + [n_frames]
    return [(s, e - 1) for s, e in zip(starts, ends)]
