"""Crop stage: each selected face as a square RGB crop at the models' resolution (step 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.faces.crop import cut_square, square_box
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


def crop_faces(chunk: Chunk, models: Any, cfg: Config) -> Chunk:
    """Reads ``faces`` and ``color``; writes ``crops``: a :class:`FaceCrops` of every face.

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
            rgb = cut_square(chunk.frames, i, sq, res, spec)
            if rgb is None:
                continue
            images.append(rgb * 2.0 - 1.0)
            frames.append(i)
            tracks.append(face.track_id)
            squares.append(sq)
            lips.append(face.lips() if hasattr(face, "lips") else None)
    chunk.crops = FaceCrops(
        frame=np.asarray(frames, dtype=np.int64),
        track_id=tracks,
        square=np.asarray(squares, dtype=np.int64).reshape(-1, 4),
        images=torch.stack(images) if images else torch.empty(0, 3, res, res),
        lips=lips,
    )
    return chunk
