"""The face crop: a square around a tracked face, on the chroma grid, at the models' size.

One definition for every user: the render's crop stage (:mod:`dubber.stages.crop`), the
paste that writes the result back (:mod:`dubber.stages.paste`) and the training corpus
(:mod:`dubber.train.prepare`), so a model sees at training exactly the crops it gets when
dubbing. The square is ``scale`` face-box sides centred on the smoothed box (DESIGN: 768 px
at 4K for a 480 px face), snapped to the chroma grid so that it can be written back in the
frame's own YUV; parts outside the frame are filled by repeating edge pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dubber.media.color import ColorSpec, yuv_region_to_rgb
from dubber.media.frames import FrameBatch, PixelLayout

Square = tuple[int, int, int, int]


def square_box(box: tuple[float, float, float, float], scale: float,
               layout: PixelLayout) -> Square:
    """The square crop around a face box, on the chroma grid.

    Args:
        box: (x0, y0, x1, y1), float pixels, full-res coded coordinates.
        scale: side as a multiple of the box's longer side.
        layout: the frames' layout (for the chroma grid).

    Returns:
        (x0, y0, x1, y1) ints; x0, y0 and the side are multiples of the chroma
        subsampling. The square may reach outside the frame.
    """
    bx0, by0, bx1, by1 = box
    step = 1 << max(layout.chroma_shift)
    side = max(step, int(math.ceil(max(bx1 - bx0, by1 - by0) * scale / step)) * step)
    x0 = int(math.floor(((bx0 + bx1) / 2 - side / 2) / step)) * step
    y0 = int(math.floor(((by0 + by1) / 2 - side / 2) / step)) * step
    return x0, y0, x0 + side, y0 + side


def visible_part(square: Square, layout: PixelLayout) -> Square | None:
    """The part of ``square`` inside the frame, or None when it is all outside."""
    x0, y0, x1, y1 = square
    v = (max(x0, 0), max(y0, 0), min(x1, layout.width), min(y1, layout.height))
    return v if v[0] < v[2] and v[1] < v[3] else None


def cut_square(frames: FrameBatch, i: int, square: Square, size: int,
               spec: ColorSpec) -> torch.Tensor | None:
    """Frame ``i``'s ``square`` as RGB at ``size`` x ``size`` (edge-padded outside the frame).

    Args:
        frames: full-resolution frames.
        i: frame index within ``frames``.
        square: from :func:`square_box`.
        size: output side (antialiased bilinear resize).
        spec: colour matrix and range.

    Returns:
        shape = (3, size, size), float32 RGB in [0, 1], or None when the square is wholly
        outside the frame.
    """
    vis = visible_part(square, frames.layout)
    if vis is None:
        return None
    rgb = yuv_region_to_rgb(frames, i, vis, spec)
    pad = ((vis[1] - square[1], square[3] - vis[3]), (vis[0] - square[0], square[2] - vis[2]),
           (0, 0))
    rgb = np.pad(rgb, pad, mode="edge")
    t = torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def in_square(points: np.ndarray, square: Square, size: int) -> np.ndarray:
    """Full-res (x, y) ``points``, shape = (K, 2), in the pixels of ``square`` resized to
    ``size``."""
    return (np.asarray(points, np.float64) - square[:2]) * (size / (square[2] - square[0]))


def grid_box(box: Square, layout: PixelLayout) -> Square:
    """``box`` clipped to the frame and grown outwards to the chroma grid (so it can be
    read and written in the frame's own YUV)."""
    fx, fy = 1 << layout.chroma_shift[0], 1 << layout.chroma_shift[1]
    x0, y0 = max(box[0], 0) // fx * fx, max(box[1], 0) // fy * fy
    x1 = min(-(-box[2] // fx) * fx, layout.width)
    y1 = min(-(-box[3] // fy) * fy, layout.height)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)
