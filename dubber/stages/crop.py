"""Crop stage: each selected face as a square RGB crop at the models' resolution (step 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.media.color import yuv_region_to_rgb
from dubber.media.frames import PixelLayout
from dubber.stages.common import color_spec


@dataclass
class FaceCrops:
    """The faces of one chunk, flattened in frame order.

    Attributes:
        frame: shape = (M,), int64: index within the chunk of each face's frame.
        track_id: per face, its track id (anything hashable).
        square: shape = (M, 4), int64: (x0, y0, x1, y1) of each square crop in full-res
            coded pixels; may reach past the frame edge (the crop is edge-padded there).
        images: shape = (M, 3, R, R), float32 RGB in [-1, 1] on the CPU.
        lips: per face, its outer lip contour, shape = (K, 2) float (x, y) full-res coded
            pixels, or None when the face object has none (a plain box).
    """

    frame: np.ndarray
    track_id: list[Any]
    square: np.ndarray
    images: torch.Tensor
    lips: list[np.ndarray | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.track_id)


def square_box(box: tuple[float, float, float, float], scale: float,
               layout: PixelLayout) -> tuple[int, int, int, int]:
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


def visible_part(square: tuple[int, int, int, int], layout: PixelLayout) -> tuple[int, int, int, int] | None:
    """The part of ``square`` inside the frame, or None when it is all outside."""
    x0, y0, x1, y1 = square
    v = (max(x0, 0), max(y0, 0), min(x1, layout.width), min(y1, layout.height))
    return v if v[0] < v[2] and v[1] < v[3] else None


def crop_faces(chunk: Chunk, models: Any, cfg: Config) -> Chunk:
    """Add ``chunk.extra["crops"]``: a :class:`FaceCrops` of every face in ``chunk.faces``.

    A face needs ``.box`` (x0, y0, x1, y1 float pixels) and ``.track_id``; its ``.lips()``
    contour, when it has that method, is kept for the paste. Faces whose square lies wholly
    outside the frame are skipped.
    """
    lay = chunk.frames.layout
    spec = color_spec(chunk)
    res = cfg.models.face_vqgan.resolution
    frames, tracks, squares, images, lips = [], [], [], [], []
    for i, faces in enumerate(chunk.faces[: len(chunk)]):
        for face in faces:
            sq = square_box(tuple(face.box), cfg.models.crop_scale, lay)
            vis = visible_part(sq, lay)
            if vis is None:
                continue
            rgb = yuv_region_to_rgb(chunk.frames, i, vis, spec)
            pad = ((vis[1] - sq[1], sq[3] - vis[3]), (vis[0] - sq[0], sq[2] - vis[2]), (0, 0))
            rgb = np.pad(rgb, pad, mode="edge")
            t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
            t = F.interpolate(t, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
            images.append(t[0] * 2.0 - 1.0)
            frames.append(i)
            tracks.append(face.track_id)
            squares.append(sq)
            lips.append(face.lips() if hasattr(face, "lips") else None)
    chunk.extra["crops"] = FaceCrops(
        frame=np.asarray(frames, dtype=np.int64),
        track_id=tracks,
        square=np.asarray(squares, dtype=np.int64).reshape(-1, 4),
        images=torch.stack(images) if images else torch.empty(0, 3, res, res),
        lips=lips,
    )
    return chunk
