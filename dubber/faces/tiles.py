"""Finding small faces: the detector on overlapping tiles and on windows around known faces.

The whole-frame pass of a 192-pixel detector misses faces under about 6% of the frame width
(a 130-pixel face in a 4K frame is 3.4%). Each frame therefore gets:

1. every ``full_every`` frames, on the first frame of a shot and whenever no face is being
   followed: the whole (downscaled) frame,
2. every ``tile_every`` frames, and on the first frame of a shot: square tiles of
   ``tile_size`` x the shorter side, overlapping by ``tile_overlap``,
3. for each face found in the previous frame that steps 1-2 did not find again: a window
   of ``roi_scale`` face sizes around it (one small call per face keeps every known face,
   small ones included, on every frame).

Steps 1 and 3 fall back to a close-range detector where the main one finds nothing: the
full-range model misses up to a fifth of the frames of some close-ups.

Boxes are mapped back to full-resolution coded pixels and merged by non-maximum suppression.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from dubber.faces.detect import Detection, FaceDetector, iou, nms

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the image


def tile_grid(width: int, height: int, tile_size: float, overlap: float) -> list[Region]:
    """Square tiles covering a ``width`` x ``height`` image.

    Args:
        tile_size: tile side as a fraction of ``min(width, height)``; 0 gives no tiles.
        overlap: fraction of the side shared by neighbouring tiles.

    Returns:
        (x0, y0, x1, y1) integer regions, row by row; the last row and column end exactly at
        the image edge.
    """
    if tile_size <= 0:
        return []
    side = max(16, int(round(tile_size * min(width, height))))
    step = max(1, int(side * (1 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        n = math.ceil((length - side) / step) + 1
        return [round(i * (length - side) / (n - 1)) for i in range(n)]

    return [
        (x, y, min(x + side, width), min(y + side, height))
        for y in starts(height)
        for x in starts(width)
    ]


def roi_around(box: Sequence[float], scale: float, width: int, height: int) -> Region:
    """A square window of ``scale`` face sizes centred on ``box``, clipped to the image."""
    x0, y0, x1, y1 = box
    side = scale * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx0, ry0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    rx1, ry1 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    return rx0, ry0, rx1, ry1


def detect_in(detector: FaceDetector, image: np.ndarray, region: Region) -> list[Detection]:
    """Run ``detector`` on ``image[region]``; boxes come back in ``image`` pixels.

    Detections cut by a tile edge (touching an inner edge of the region) are kept: the
    whole-frame pass or a neighbouring tile usually sees the face whole and wins the NMS.
    """
    x0, y0, x1, y1 = region
    if x1 - x0 < 8 or y1 - y0 < 8:
        return []
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    return [d.scaled(1.0, x0, y0) for d in detector.detect(crop)]


class FrameDetector:
    """Per-frame detection with tiles and windows around known faces.

    Args:
        detector: the backend.
        scale: the ratio of the images given to :meth:`detect` to full resolution
            (e.g. 0.25); boxes are returned in full-resolution pixels.
        tile_size, tile_overlap, tile_every, roi_scale, full_every: see
            :class:`~dubber.config.FacesConfig`.
        close_detector: a detector for images in which a face is large, tried on the whole
            frame and in the windows around known faces where ``detector`` finds nothing.
    """

    def __init__(
        self,
        detector: FaceDetector,
        scale: float,
        tile_size: float = 0.6,
        tile_overlap: float = 0.2,
        tile_every: int = 10,
        roi_scale: float = 3.0,
        full_every: int = 3,
        close_detector: FaceDetector | None = None,
    ) -> None:
        self.detector = detector
        self.close_detector = close_detector
        self.scale = scale
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.tile_every = tile_every
        self.roi_scale = roi_scale
        self.full_every = full_every
        self._count = 0
        self.calls = 0  # detector invocations so far (for the benchmark)

    def detect(
        self, image: np.ndarray, known: Sequence[Sequence[float]] = (), scan: bool = False
    ) -> list[Detection]:
        """Faces in one frame.

        Args:
            image: shape = (h, w, 3), uint8 RGB at ``scale`` of full resolution.
            known: full-resolution boxes of the faces found in the previous frame.
            scan: force a tile scan (first frame of a shot).

        Returns:
            Detections in full-resolution coded pixels, after NMS.
        """
        h, w = image.shape[:2]
        dets: list[Detection] = []
        if scan or not known or self._count % self.full_every == 0:
            dets += self._detect(image, (0, 0, w, h))
        if scan or self._count % self.tile_every == 0:
            for region in tile_grid(w, h, self.tile_size, self.tile_overlap):
                dets += detect_in(self.detector, image, region)
                self.calls += 1
        self._count += 1
        if known:
            found = np.array([d.box for d in dets]).reshape(-1, 4)
            for box in known:
                small = np.asarray(box, np.float64) * self.scale
                if len(found) and iou(small[None], found).max() > 0.3:
                    continue
                dets += self._detect(image, roi_around(small, self.roi_scale, w, h))
        return [d.scaled(1.0 / self.scale) for d in nms(dets)]

    def _detect(self, image: np.ndarray, region: Region) -> list[Detection]:
        """The main detector on ``region``; the close-range one only where it finds
        nothing (so boxes keep one detector's proportions wherever both would see the face)."""
        found = detect_in(self.detector, image, region)
        self.calls += 1
        if not found and self.close_detector is not None:
            found = detect_in(self.close_detector, image, region)
            self.calls += 1
        return found


def resize_for_detection(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` scaled by ``factor`` with area averaging (factor 1 returns it unchanged).

    Args:
        image: shape = (H, W, 3), uint8.
    """
    if abs(factor - 1.0) < 1e-6:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)
