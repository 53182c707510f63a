"""The mouth region: where a new mouth may be drawn over a face, as a soft weight.

One definition, used by the paste (the weight of the new mouth, and the part left out of
the colour match), the renderer and the tests: the outer lip contour from the face mesh
(or, without one, an ellipse where the mouth is on an upright face), swept down to the
height an opening mouth takes (:func:`opened_lips`), grown and feathered
(:func:`mouth_mask`), and placed in a face's square (:func:`square_mask`).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from dubber.faces.crop import in_square
from dubber.faces.landmarks import LIP_OUTER


def box_lips(box: Sequence[float]) -> np.ndarray:
    """Without a mesh: an ellipse over the lower third of a face box, shape = (20, 2)
    float64 full-res pixels (where the mouth is on a frontal, upright face; for
    display-rotated video the mesh polygon is the reliable source)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, y0 + 0.78 * (y1 - y0)
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    return np.stack([cx + 0.25 * (x1 - x0) * np.cos(a), cy + 0.1 * (y1 - y0) * np.sin(a)],
                    axis=1)


def opened_lips(polygon: np.ndarray, height: float) -> np.ndarray:
    """The region a mouth could open into: ``polygon`` (the outer lip contour in
    :data:`LIP_OUTER` order) swept down the face until it is ``height`` mouth widths tall.

    The upper lip stays where it is and "down" is across the line between the mouth
    corners, towards the lower lip, so a rolled or display-rotated face is handled. A
    contour already that tall is returned as its convex hull. Masks made from this change
    little while the original speaker talks, so the original mouth's opening and closing
    does not show through the paste's edge.

    Args:
        polygon: shape = (20, 2), (x, y) pixels.
        height: the least height of the region, in mouth widths (corner to corner);
            0 returns ``polygon`` unchanged.

    Returns:
        shape = (K, 2) float64, a convex polygon containing ``polygon``.
    """
    poly = np.asarray(polygon, np.float64)
    if height <= 0 or len(poly) != len(LIP_OUTER):
        return poly
    left, bottom, right, top = (poly[LIP_OUTER.index(i)] for i in (61, 17, 291, 0))
    across = right - left
    width = float(np.hypot(*across))
    if width < 1e-6:
        return poly
    down = np.array([-across[1], across[0]]) / width
    if np.dot(bottom - top, down) < 0:
        down = -down
    extra = max(0.0, height * width - float(np.dot(bottom - top, down)))
    pts = np.concatenate([poly, poly + extra * down])
    return pts[cv2.convexHull(pts.astype(np.float32), returnPoints=False)[:, 0]]


def mouth_mask(polygon: np.ndarray, shape: tuple[int, int], feather: float = 0.15) -> np.ndarray:
    """A soft mask of the mouth: the lip polygon grown and blurred by ``feather``.

    Args:
        polygon: shape = (K, 2), (x, y) in the mask's pixels.
        shape: (height, width) of the mask.
        feather: grow and blur radius as a fraction of the mouth width.

    Returns:
        shape = ``shape``, float32 in [0, 1]: 1 inside the mouth region, falling smoothly
        to 0 about ``2 * feather`` mouth widths outside the lips.
    """
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    width = float(np.ptp(polygon[:, 0])) if len(polygon) else 0.0
    r = max(1, int(round(feather * width)))
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=r / 2 + 0.5)
    return np.clip(soft, 0.0, 1.0)


def square_mask(lips: np.ndarray, square: tuple[int, int, int, int], feather: float,
                size: int | None = None, open_to: float = 0.0) -> np.ndarray:
    """The paste weight over a face's square, shape = (size, size) float32 in [0, 1].

    Args:
        lips: shape = (K, 2), the lip contour in full-res pixels.
        square: (x0, y0, x1, y1) of the face's square crop.
        feather: grow and blur radius, in mouth widths.
        size: side of the mask in pixels (default: the square's own side).
        open_to: the least height of the region, in mouth widths (``opened_lips``).
    """
    size = size or square[2] - square[0]
    return mouth_mask(in_square(opened_lips(lips, open_to), square, size), (size, size), feather)
