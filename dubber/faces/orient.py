"""Display rotation: detectors and the face mesh need upright faces, results stay coded.

Frames travel in coded orientation (a phone video may be stored sideways with a display
rotation). The analysis turns each image upright before detection and the mesh, and maps
boxes and points back to coded pixels, which is what tracks files and the render use.
``rotation`` is the display rotation in degrees counter-clockwise (0, 90, 180, 270), as in
:class:`dubber.media.probe.VideoInfo`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` (coded orientation, shape (H, W, ...)) as displayed."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def points_to_coded(points: np.ndarray, rotation: int, width: int, height: int) -> np.ndarray:
    """(x, y) points of the upright image back to coded pixels.

    Args:
        points: shape = (K, 2), float, continuous pixel coordinates of the upright image.
        width, height: the CODED image size (of whatever scale ``points`` are in).
    """
    k = (rotation // 90) % 4
    x, y = points[:, 0], points[:, 1]
    if k == 0:
        return points
    if k == 1:
        return np.stack([width - y, x], axis=1)
    if k == 2:
        return np.stack([width - x, height - y], axis=1)
    return np.stack([y, height - x], axis=1)


def box_to_coded(box: Sequence[float], rotation: int, width: int,
                 height: int) -> tuple[float, float, float, float]:
    """An (x0, y0, x1, y1) box of the upright image back to a coded-pixel box."""
    x0, y0, x1, y1 = box
    pts = points_to_coded(np.array([[x0, y0], [x1, y1]], np.float64), rotation, width, height)
    (ax, ay), (bx, by) = pts
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def upright_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """(width, height) of a coded ``width`` x ``height`` image once turned upright."""
    return (height, width) if (rotation // 90) % 2 else (width, height)


def box_to_upright(box: Sequence[float], rotation: int, width: int,
                   height: int) -> tuple[float, float, float, float]:
    """A coded-pixel box of a ``width`` x ``height`` image into the upright image."""
    uw, uh = upright_size(width, height, rotation)
    return box_to_coded(box, (360 - rotation) % 360, uw, uh)
