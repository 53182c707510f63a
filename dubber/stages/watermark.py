"""Watermark stage: the invisible mark in every face the render changed (DESIGN step 7).

Runs after the paste. The faces are ``chunk.faces`` (the faces the VQ path re-rendered on
each frame) and ``chunk.rendered`` (those the mouth bank drew), and the mark sits in each face's canonical square, which
:class:`~dubber.watermark.FaceSquare` derives from its tracked box; only the luma plane
changes, and only inside that square's disc (see :mod:`dubber.watermark`).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.watermark import FaceSquare, codeword, embed_faces

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _codeword(payload: str) -> np.ndarray:
    return codeword(payload)


def face_boxes(chunk: Chunk) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(frame index in the chunk, box) of every face the render changed: the one place this
    stage reads the chunk's faces (each needs a ``.box``, x0, y0, x1, y1 full-res pixels)."""
    out = []
    for per_frame in (chunk.faces, chunk.rendered):
        out += [(i, tuple(float(v) for v in face.box))
                for i, faces in enumerate(per_frame[: len(chunk)]) for face in faces]
    return out


def watermark_faces(chunk: Chunk, models: object, cfg: Config) -> Chunk:
    """Reads ``faces`` and ``rendered``; embeds ``cfg.watermark.payload`` in each of those
    faces, in place (luma only)."""
    wcfg = cfg.watermark
    faces = face_boxes(chunk)
    if not wcfg.enabled or not faces:
        return chunk
    lay = chunk.frames.layout
    lumas = {i: chunk.frames.writable_planes(i)[0] for i in {i for i, _ in faces}}
    squares = [FaceSquare.from_box(box) for _, box in faces]
    keep = [k for k, sq in enumerate(squares)
            if sq.x0 < lay.width and sq.y0 < lay.height and sq.x0 + sq.side > 0
            and sq.y0 + sq.side > 0]
    embed_faces([lumas[faces[k][0]] for k in keep], [squares[k] for k in keep],
                _codeword(wcfg.payload), wcfg.strength, unit=float(1 << (lay.bit_depth - 8)))
    log.debug("chunk %d: watermarked %d faces", chunk.index, len(keep))
    return chunk
