"""Small full-resolution regions of planar YUV frames as RGB, for the face mesh.

:func:`dubber.media.color.yuv_region_to_rgb` converts a region at its full size; the mesh
only needs it at ``MESH_INPUT`` pixels, so here each plane is first resized to that size and
only then converted (at 4K a 540-pixel face region costs about a fifth as much). The colour
matrix and range come from :class:`~dubber.media.color.ColorSpec`, as in the model stages.
"""

from __future__ import annotations

import cv2
import numpy as np

from dubber.media.color import MATRICES, ColorSpec
from dubber.media.frames import FrameBatch


def crop_rgb(frames: FrameBatch, i: int, region: tuple[int, int, int, int],
             out_size: int | tuple[int, int] | None = None,
             spec: ColorSpec | None = None) -> np.ndarray:
    """Frame ``i``'s ``region`` as RGB.

    Args:
        frames: the chunk's full-resolution frames.
        i: frame number inside the batch.
        region: (x0, y0, x1, y1) integer luma pixels inside the frame.
        out_size: resize to ``out_size`` x ``out_size``, or to (width, height), first (area
            filter when shrinking).
        spec: colour matrix and range (default: :meth:`ColorSpec.guess` from the size).

    Returns:
        shape = (y1 - y0, x1 - x0, 3) or the resized shape, uint8 RGB.
    """
    lay = frames.layout
    spec = spec or ColorSpec.guess(lay.width, lay.height)
    x0, y0, x1, y1 = region
    sx, sy = lay.chroma_shift
    py, pu, pv = frames.planes(i)
    y = py[y0:y1, x0:x1]
    cu = pu[y0 >> sy:((y1 - 1) >> sy) + 1, x0 >> sx:((x1 - 1) >> sx) + 1]
    cv = pv[y0 >> sy:((y1 - 1) >> sy) + 1, x0 >> sx:((x1 - 1) >> sx) + 1]
    if out_size:
        size = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
        interp = cv2.INTER_AREA if (y1 - y0) > size[1] else cv2.INTER_LINEAR
        y, u, v = (cv2.resize(p, size, interpolation=interp) for p in (y, cu, cv))
    else:  # chroma by sample repetition
        rows = (np.arange(y0, y1) >> sy) - (y0 >> sy)
        cols = (np.arange(x0, x1) >> sx) - (x0 >> sx)
        u, v = cu[rows][:, cols], cv[rows][:, cols]
    k = float(1 << (lay.bit_depth - 8))
    if spec.full_range:
        top = float(lay.max_value)
        yo, ys, co, cs = 0.0, top, float(1 << (lay.bit_depth - 1)), top
    else:
        yo, ys, co, cs = 16 * k, 219 * k, 128 * k, 224 * k
    yl = (y.astype(np.float32) - yo) / ys
    pb = (u.astype(np.float32) - co) / cs
    pr = (v.astype(np.float32) - co) / cs
    kr, kb = MATRICES[spec.matrix]
    r = yl + 2 * (1 - kr) * pr
    b = yl + 2 * (1 - kb) * pb
    g = (yl - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.stack([r, g, b], axis=-1) * 255 + 0.5, 0, 255).astype(np.uint8)
