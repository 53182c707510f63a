"""Paste: the generated faces back into the frame, in its own YUV.

Two modes (``models.paste``):

- ``"mouth"`` (the default): only the mouth region changes. The weight is the lip contour
  of the original frame, swept down to ``models.paste_open`` mouth widths tall
  (:func:`dubber.faces.landmarks.opened_lips`: the region the mouth opens into, so the
  original speaker's opening and closing does not move the mask's edge), grown by
  ``models.paste_feather`` mouth widths and blurred
  (:func:`dubber.faces.landmarks.mouth_mask`), so the jaw and the lips can move inside it
  while eyes, nose, hair and background stay the decoded pixels, bit-exact where the weight
  is 0. The generated face only has to be right where the lips are.
  ``models.paste_chroma`` weighs the model's own colour (chroma) against colour redrawn
  from the face itself (:func:`recolour`): the skin's colour from around the region, and
  the tint of the speaker's lips wherever the new mouth is as dark as lips. 0 takes only
  the brightness of the new mouth from the model, which hides a small model's colour
  errors; the original frame's colour is not kept as it is, since the lips' colour would
  draw the original mouth's shape over the new one.
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
from dubber.faces.crop import grid_box, in_square, visible_part
from dubber.faces.hands import silhouette
from dubber.faces.mouth_region import square_mask
from dubber.media.color import rgb_to_yuv_region
from dubber.stages.common import color_spec

_MIN_ALPHA = 1.0 / 512  # weights below this change no 8-bit sample: not written


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


_SKIN_SIGMA = 0.1  # crop widths: the blur that carries the skin's colour into the region


def _blur_outside(a: np.ndarray, inside: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``a`` (S, S, C) over the pixels outside ``inside`` (S, S) in [0, 1],
    normalised, so the values around a region fill it in."""
    keep = (1.0 - np.clip(inside, 0.0, 1.0)).astype(np.float32)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)

    return blur(a * keep[..., None]).reshape(a.shape) / np.maximum(blur(keep), 1e-3)[..., None]


def _ycc(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(luma (S, S), colour differences (S, S, 2): B - Y, R - Y) of an (S, S, 3) RGB."""
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return y, np.stack([rgb[..., 2] - y, rgb[..., 0] - y], -1)


def _rgb(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    b, r = y + c[..., 0], y + c[..., 1]
    return np.stack([r, (y - 0.299 * r - 0.114 * b) / 0.587, b], -1)


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
    diff = (_resized(original, size) - gen).permute(0, 2, 3, 1).numpy()
    if exclude is None:
        exclude = np.zeros(diff.shape[:3], np.float32)
    low = [_blur_outside(d, exclude[m], sigma * size) for m, d in enumerate(diff)]
    return (gen + torch.from_numpy(np.stack(low)).permute(0, 3, 1, 2)).clamp(-1.0, 1.0)


def recolour(generated: torch.Tensor, original: torch.Tensor, region: np.ndarray,
             lips: np.ndarray, chroma: float) -> torch.Tensor:
    """``generated`` with its colour (chroma) drawn from the original face, not the model.

    Inside ``region`` the colour is the skin's, carried in from around the region (a blur
    normalised over the pixels outside it), plus the tint of the original lips in
    proportion to how dark the generated face is there against the skin (full where it is
    as dark as the original lips). The tint is the mean colour, against that skin, of the
    more saturated half of the lip area, so an open mouth's dark inside does not dilute
    it. The new lips and the mouth's dark inside thus take the speaker's lip colour
    wherever the model draws them, and nowhere else. The luma stays the model's.

    Args:
        generated: shape = (M, 3, S, S), float RGB in [-1, 1].
        original: shape = (M, 3, R, R), the crops the faces were generated from.
        region: shape = (M, S, S) float in [0, 1], the paste region of each face.
        lips: shape = (M, S, S) bool: the original lips (outer contour, filled); a face
            with none gets no tint.
        chroma: weight of the model's own colour (1 returns ``generated`` unchanged).

    Returns:
        shape = (M, 3, S, S) float32, clamped to [-1, 1].
    """
    if chroma >= 1 or len(generated) == 0:
        return generated
    size = generated.shape[-1]
    gen = ((generated.float() + 1) / 2).permute(0, 2, 3, 1).numpy()
    org = ((_resized(original, size) + 1) / 2).permute(0, 2, 3, 1).numpy()
    out = []
    for m in range(len(gen)):
        if not region[m].any():  # no mouth region: the model's colours as they are
            out.append(gen[m])
            continue
        y_g, c_g = _ycc(gen[m])
        y_o, c_o = _ycc(org[m])
        skin = _blur_outside(np.dstack([y_o, c_o]), region[m], _SKIN_SIGMA * size)
        skin_y, skin_c = skin[..., 0], skin[..., 1:]
        tint, dark = np.zeros(2, np.float32), 1.0
        if lips[m].any():  # the lip tissue: the more saturated half of the lip area
            sat = np.linalg.norm(c_o[lips[m]], axis=1)
            tissue = sat >= np.median(sat)
            tint = (c_o - skin_c)[lips[m]][tissue].mean(0)
            dark = max(float((skin_y - y_o)[lips[m]][tissue].mean()), 0.02)
        weight = np.clip((skin_y - y_g) / dark, 0.0, 1.0)[..., None]
        out.append(_rgb(y_g, chroma * c_g + (1 - chroma) * (skin_c + weight * tint)))
    rgb = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return (rgb * 2 - 1).clamp(-1.0, 1.0)


def _lips(crops, m: int) -> np.ndarray | None:
    return crops.lips[m] if m < len(crops.lips) else None


def paste_faces(chunk: Chunk, models: object, cfg: Config) -> Chunk:
    """Reads ``crops``, ``generated`` and ``color``; writes ``generated`` into ``frames`` at
    each face (in place, inside the paste region only)."""
    crops = chunk.crops
    mode = cfg.models.paste  # "mouth" or "box" (load_config checks it)
    generated = chunk.generated
    exclude = None
    if mode == "mouth" and len(generated):
        size = generated.shape[-1]
        exclude = np.zeros((len(generated), size, size), np.float32)
        lip_area = np.zeros((len(generated), size, size), bool)
        for m in range(len(generated)):
            if (lips := _lips(crops, m)) is not None:
                sq = tuple(crops.square[m])
                exclude[m] = square_mask(lips, sq, cfg.models.paste_feather, size,
                                         cfg.models.paste_open)
                area = np.zeros((size, size), np.uint8)
                cv2.fillPoly(area, [np.round(in_square(lips, sq, size)).astype(np.int32)], 1)
                lip_area[m] = area > 0
    faces = match_colour(generated, crops.images, cfg.models.paste_color_sigma, exclude)
    if exclude is not None:
        faces = recolour(faces, crops.images, exclude, lip_area, cfg.models.paste_chroma)
    lay = chunk.frames.layout
    spec = color_spec(chunk)
    for m in range(len(crops)):
        sq = tuple(int(v) for v in crops.square[m])
        vis = visible_part(sq, lay)
        if vis is None:
            continue
        side = sq[2] - sq[0]
        alpha = None
        lips = _lips(crops, m)
        if mode == "mouth" and lips is not None:
            weight = square_mask(lips, sq, cfg.models.paste_feather, open_to=cfg.models.paste_open)
            ys, xs = np.nonzero(weight >= _MIN_ALPHA)
            if len(ys) == 0:
                continue
            box = (sq[0] + int(xs.min()), sq[1] + int(ys.min()),
                   sq[0] + int(xs.max()) + 1, sq[1] + int(ys.max()) + 1)
            box = (max(box[0], vis[0]), max(box[1], vis[1]),
                   min(box[2], vis[2]), min(box[3], vis[3]))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue
            vis = grid_box(box, lay)
            alpha = weight[vis[1] - sq[1] : vis[3] - sq[1], vis[0] - sq[0] : vis[2] - sq[0]]
        img = F.interpolate(faces[m : m + 1].float(), size=(side, side), mode="bilinear",
                            antialias=True, align_corners=False)[0]
        rgb = ((img.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        rgb = rgb[vis[1] - sq[1] : vis[3] - sq[1], vis[0] - sq[0] : vis[2] - sq[0]]
        hands = chunk.hands.get((int(crops.frame[m]), crops.track_id[m]))
        if hands is not None:  # a hand before the face stays in front (dubber.faces.hands)
            keep = 1.0 - silhouette(hands, vis)
            alpha = keep if alpha is None else alpha * keep
        rgb_to_yuv_region(rgb, chunk.frames, int(crops.frame[m]), vis, spec, alpha)
    return chunk
