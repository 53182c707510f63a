"""Square face crops at the model size, and their inverse for paste-back.

The crop is a square of ``margin`` face-box sides centred on the smoothed box (DESIGN:
768 px at 4K for a 480 px face; the render passes ``models.crop_scale``), resized to
``size`` (the models' 256). Parts outside the frame are filled by repeating edge pixels.
The model stages cut their crops on the chroma grid straight from YUV
(:mod:`dubber.stages.crop`); this module is the RGB/plane-level geometry and the
residual paste-back that leaves an unmodified face bit-exact.

Paste-back adds the *change* the model made, not its picture: the generated crop minus
the original crop, resized back to the crop's full-resolution side, optionally weighted by
a soft mouth mask, is added to the full-resolution pixels inside the crop. An unmodified
face therefore comes back bit-exact, pixels outside the crop are never touched, and the
original's full-resolution detail survives wherever the model changed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


@dataclass(frozen=True)
class CropBox:
    """A square region of the full-resolution frame, possibly reaching past its edges.

    Attributes:
        x0, y0: top-left corner, integer full-res pixels (may be negative).
        side: side in pixels.
        size: side of the model-size crop it is resized to.
    """

    x0: int
    y0: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        """Model pixels per full-resolution pixel."""
        return self.size / self.side

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Full-res (x, y) points, shape = (K, 2), into model-crop pixels."""
        return (np.asarray(points, np.float64) - [self.x0, self.y0]) * self.scale

    def clipped(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The part inside a ``width`` x ``height`` frame: (x0, y0, x1, y1)."""
        return (max(self.x0, 0), max(self.y0, 0),
                min(self.x0 + self.side, width), min(self.y0 + self.side, height))


def crop_box(box: Sequence[float], margin: float = 1.6, size: int = 256) -> CropBox:
    """The square crop around a face box.

    Args:
        box: (x0, y0, x1, y1) full-res pixels, smoothed.
        margin: crop side in units of the box's longer side.
        size: model input side.
    """
    x0, y0, x1, y1 = box
    side = max(2, int(round(margin * max(x1 - x0, y1 - y0))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return CropBox(int(round(cx - side / 2)), int(round(cy - side / 2)), side, size)


def crop_face(image: np.ndarray, cb: CropBox) -> np.ndarray:
    """Cut and resize a face crop.

    Args:
        image: shape = (H, W, C) or (H, W), uint8 or uint16, full resolution.
        cb: the crop.

    Returns:
        shape = (cb.size, cb.size[, C]), same dtype as ``image``.
    """
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = cb.clipped(w, h)
    region = image[cy0:cy1, cx0:cx1]
    pad = ((cy0 - cb.y0, cb.y0 + cb.side - cy1), (cx0 - cb.x0, cb.x0 + cb.side - cx1))
    if any(p for pair in pad for p in pair):
        region = np.pad(region, pad + ((0, 0),) * (image.ndim - 2), mode="edge")
    interp = cv2.INTER_AREA if cb.side > cb.size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(region), (cb.size, cb.size), interpolation=interp)


def paste_back(
    image: np.ndarray,
    cb: CropBox,
    generated: np.ndarray,
    original: np.ndarray,
    mask: np.ndarray | None = None,
    max_value: int | None = None,
) -> None:
    """Add the model's change to a face crop back into the full-resolution image, in place.

    Args:
        image: shape = (H, W, C) or (H, W), uint8 or uint16, modified in place inside the
            crop only.
        cb: the crop ``original`` was cut with.
        generated: shape = (size, size[, C]), the model's output, any real dtype.
        original: shape = (size, size[, C]), what :func:`crop_face` returned.
        mask: shape = (size, size), float in [0, 1], where the change applies (default:
            everywhere in the crop).
        max_value: the largest sample value (default: the dtype's maximum).
    """
    h, w = image.shape[:2]
    delta = generated.astype(np.float32) - original.astype(np.float32)
    if mask is not None:
        m = mask.astype(np.float32)
        delta *= m[..., None] if delta.ndim == 3 else m
    if not np.any(delta):
        return
    up = cv2.resize(delta, (cb.side, cb.side), interpolation=cv2.INTER_LINEAR)
    cx0, cy0, cx1, cy1 = cb.clipped(w, h)
    part = up[cy0 - cb.y0: cy1 - cb.y0, cx0 - cb.x0: cx1 - cb.x0]
    top = np.iinfo(image.dtype).max if max_value is None else max_value
    region = image[cy0:cy1, cx0:cx1]
    region[...] = np.clip(np.rint(region.astype(np.float32) + part), 0, top).astype(image.dtype)
