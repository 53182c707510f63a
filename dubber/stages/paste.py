"""Paste: the generated faces back into the frame, in its own YUV.

Two modes (``models.paste``):

- ``"mouth"`` (the default): only the mouth region changes. The weight is the lip contour
  of the original frame grown by ``models.paste_feather`` mouth widths and blurred
  (:func:`dubber.faces.landmarks.mouth_mask`), so the jaw and the lips can move inside it
  while eyes, nose, hair and background stay the decoded pixels, bit-exact where the weight
  is 0. The generated face only has to be right where the lips are. ``models.paste_chroma``
  scales the weight of its colour (the chroma planes) against its brightness: 0 keeps the
  face's own colour and takes only the brightness of the new mouth (its opening, teeth and
  shading), which hides a small model's colour errors at the cost of the lips' own tint.
- ``"box"``: the whole visible square of each face is replaced (no seam handling).

Before either, the generated face takes the original crop's colour at large scale
(``models.paste_color_sigma``): the difference between the two crops, blurred with a
Gaussian of that many crop widths, is added to the generated face. In ``"mouth"`` mode the
mouth region is left out of that blur (normalised, so the skin around it fills in): a
mouth the original speaker opens would otherwise come through as a blurred dark patch.
A VQGAN trained on a few speakers shifts skin tone and lighting on a face it never saw;
this keeps the mouth's shape and shading from the model and the face's own colour around
it, so the seam does not show as a tinted patch. The paste-back issue (occlusion, a
proper seam) builds on this.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.faces.landmarks import mouth_mask
from dubber.media.color import rgb_to_yuv_region
from dubber.stages.common import color_spec
from dubber.stages.crop import visible_part

_MIN_ALPHA = 1.0 / 512  # weights below this change no 8-bit sample: not written


def square_mask(lips: np.ndarray, square: tuple[int, int, int, int], feather: float,
                size: int | None = None) -> np.ndarray:
    """The paste weight over a face's square, shape = (size, size) float32 in [0, 1].

    Args:
        lips: shape = (K, 2), the lip contour in full-res pixels.
        square: (x0, y0, x1, y1) of the face's square crop.
        feather: grow and blur radius, in mouth widths.
        size: side of the mask in pixels (default: the square's own side).
    """
    side = square[2] - square[0]
    size = size or side
    pts = (np.asarray(lips, np.float64) - (square[0], square[1])) * (size / side)
    return mouth_mask(pts, (size, size), feather)


def match_colour(
    generated: torch.Tensor,
    original: torch.Tensor,
    sigma: float,
    exclude: np.ndarray | None = None,
) -> torch.Tensor:
    """``generated`` with the large-scale colour of ``original``.

    Args:
        generated: shape = (M, 3, S, S), float RGB in [-1, 1].
        original: shape = (M, 3, R, R), the crops the faces were generated from (resized to S).
        sigma: Gaussian blur radius as a fraction of S; 0 returns ``generated`` unchanged.
        exclude: shape = (M, S, S) float in [0, 1], or None: how much each pixel is left out
            of the colour estimate (the mouth). The correction there is carried in from the
            skin around it (a normalised blur), so neither the original mouth (its opening
            or closing) nor the generated one leaks into the other.

    Returns:
        shape = (M, 3, S, S) float32: generated + blur(original - generated), clamped.
    """
    if sigma <= 0 or len(generated) == 0:
        return generated
    gen = generated.float()
    size = gen.shape[-1]
    orig = F.interpolate(original.float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)
    diff = (orig - gen).permute(0, 2, 3, 1).numpy()
    s = sigma * size

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), sigmaX=s, borderType=cv2.BORDER_REFLECT)

    low = []
    for m, d in enumerate(diff):
        if exclude is None:
            low.append(blur(d))
            continue
        keep = (1.0 - np.clip(exclude[m], 0.0, 1.0)).astype(np.float32)
        low.append(blur(d * keep[..., None]) / np.maximum(blur(keep), 1e-3)[..., None])
    return (gen + torch.from_numpy(np.stack(low)).permute(0, 3, 1, 2)).clamp(-1.0, 1.0)


def _grid_box(box: tuple[int, int, int, int], step: tuple[int, int], width: int,
              height: int) -> tuple[int, int, int, int]:
    """``box`` grown outwards to the chroma grid (its end stays inside the frame)."""
    fx, fy = step
    x0, y0 = box[0] // fx * fx, box[1] // fy * fy
    x1 = min(-(-box[2] // fx) * fx, width)
    y1 = min(-(-box[3] // fy) * fy, height)
    return x0, y0, x1, y1


def _lips(crops, m: int) -> np.ndarray | None:
    return crops.lips[m] if m < len(crops.lips) else None


def paste_faces(chunk: Chunk, models: object, cfg: Config) -> Chunk:
    """Write ``extra["generated"]`` into ``chunk.frames`` at each face (in place)."""
    crops = chunk.extra["crops"]
    mode = cfg.models.paste  # "mouth" or "box" (load_config checks it)
    generated = chunk.extra["generated"]
    exclude = None
    if mode == "mouth" and len(generated):
        size = generated.shape[-1]
        exclude = np.zeros((len(generated), size, size), np.float32)
        for m in range(len(generated)):
            if (lips := _lips(crops, m)) is not None:
                exclude[m] = square_mask(lips, tuple(crops.square[m]), cfg.models.paste_feather,
                                         size)
    faces = match_colour(generated, crops.images, cfg.models.paste_color_sigma, exclude)
    lay = chunk.frames.layout
    spec = color_spec(chunk)
    step = (1 << lay.chroma_shift[0], 1 << lay.chroma_shift[1])
    for m in range(len(crops)):
        sq = tuple(int(v) for v in crops.square[m])
        vis = visible_part(sq, lay)
        if vis is None:
            continue
        side = sq[2] - sq[0]
        alpha = None
        lips = _lips(crops, m)
        if mode == "mouth" and lips is not None:
            weight = square_mask(lips, sq, cfg.models.paste_feather)
            ys, xs = np.nonzero(weight >= _MIN_ALPHA)
            if len(ys) == 0:
                continue
            box = (sq[0] + int(xs.min()), sq[1] + int(ys.min()),
                   sq[0] + int(xs.max()) + 1, sq[1] + int(ys.max()) + 1)
            box = (max(box[0], vis[0]), max(box[1], vis[1]),
                   min(box[2], vis[2]), min(box[3], vis[3]))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue
            vis = _grid_box(box, step, lay.width, lay.height)
            alpha = weight[vis[1] - sq[1] : vis[3] - sq[1], vis[0] - sq[0] : vis[2] - sq[0]]
        img = F.interpolate(faces[m : m + 1].float(), size=(side, side), mode="bilinear",
                            antialias=True, align_corners=False)[0]
        rgb = ((img.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        rgb = rgb[vis[1] - sq[1] : vis[3] - sq[1], vis[0] - sq[0] : vis[2] - sq[0]]
        rgb_to_yuv_region(rgb, chunk.frames, int(crops.frame[m]), vis, spec, alpha,
                          cfg.models.paste_chroma)
    return chunk
