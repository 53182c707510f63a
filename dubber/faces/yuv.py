"""Small full-resolution regions of planar YUV frames as RGB, for the face mesh.

Interim: the models engineer's ``dubber.media.color`` owns the exact conversion (colour
matrix and range from the video's metadata). The mesh is insensitive to a slightly wrong
matrix, so this uses BT.709 for HD and larger and BT.601 below, limited range, and
nearest-neighbour chroma upsampling (or each plane resized to the output size).
"""

from __future__ import annotations

import cv2
import numpy as np

from dubber.media.frames import FrameBatch

# Kr, Kb of the two matrices.
_K = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}


def crop_rgb(frames: FrameBatch, i: int, region: tuple[int, int, int, int],
             out_size: int | None = None) -> np.ndarray:
    """Frame ``i``'s ``region`` as RGB.

    Args:
        frames: the chunk's full-resolution frames.
        i: frame number inside the batch.
        region: (x0, y0, x1, y1) integer luma pixels, clipped to the frame by the caller.
        out_size: resize the result to ``out_size`` x ``out_size`` (area filter) if given.

    Returns:
        shape = (y1 - y0, x1 - x0, 3) or (out_size, out_size, 3), uint8 RGB.
    """
    lay = frames.layout
    x0, y0, x1, y1 = region
    sx, sy = lay.chroma_shift
    py, pu, pv = frames.planes(i)
    y = py[y0:y1, x0:x1]
    cu = pu[y0 >> sy:((y1 - 1) >> sy) + 1, x0 >> sx:((x1 - 1) >> sx) + 1]
    cv = pv[y0 >> sy:((y1 - 1) >> sy) + 1, x0 >> sx:((x1 - 1) >> sx) + 1]
    if out_size:
        # Resize the planes first: the conversion then costs out_size**2, not the region.
        size = (out_size, out_size)
        interp = cv2.INTER_AREA if (y1 - y0) > out_size else cv2.INTER_LINEAR
        y = cv2.resize(y, size, interpolation=interp).astype(np.float32)
        u = cv2.resize(cu, size, interpolation=interp).astype(np.float32)
        v = cv2.resize(cv, size, interpolation=interp).astype(np.float32)
    else:
        rows = (np.arange(y0, y1) >> sy) - (y0 >> sy)
        cols = (np.arange(x0, x1) >> sx) - (x0 >> sx)
        y = y.astype(np.float32)
        u = cu[rows][:, cols].astype(np.float32)
        v = cv[rows][:, cols].astype(np.float32)
    scale = 1 << (lay.bit_depth - 8)
    kr, kb = _K["bt709" if lay.height >= 720 else "bt601"]
    kg = 1 - kr - kb
    yl = (y / scale - 16) * (255 / 219)
    pb = (u / scale - 128) * (255 / 224)
    pr = (v / scale - 128) * (255 / 224)
    r = yl + 2 * (1 - kr) * pr
    b = yl + 2 * (1 - kb) * pb
    g = (yl - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], axis=-1) + 0.5, 0, 255).astype(np.uint8)
