"""Warp a bank frame's lower face onto a target frame and blend it in, at full resolution.

1. **Align.** A similarity transform fitted on the :data:`~dubber.mouth.geometry.STABLE`
   points (eyes, nose, upper cheeks) takes the source face onto the target face.
2. **Warp** piecewise-affinely over a Delaunay triangulation of the mesh: the
   :data:`~dubber.mouth.geometry.PINNED` points (the region's rim under the nose and beside
   the mouth, and further out) go where the target has them; the
   :data:`~dubber.mouth.geometry.MOVING` points (lips, chin, jaw line) where the aligned
   source has them. Lips, jaw and chin thus move together, as in the source frame, and the
   region's edge lands on the target face.
3. **Region**: the outline :data:`~dubber.mouth.geometry.REGION` (inside the face
   contour), reaching below the lower of the two chins so that neither a dropped nor a
   raised jaw leaves the old chin showing; feathered inwards from its edge.
4. **Colour**: the low frequencies of the target (skin tone and light) replace those of
   the warped source, estimated around the mouth but not on it, so the mouth keeps its
   own shading while the seam disappears.

Everything works on float RGB in [0, 1] of a box of the frame; writing it back in the
frame's own YUV is the render stage's work.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from dubber.config import MouthConfig
from dubber.faces.crop import grid_box
from dubber.faces.landmarks import LIP_OUTER
from dubber.media.frames import PixelLayout
from dubber.mouth.geometry import (CHIN, MOVING, PINNED, REGION, STABLE, apply, eye_distance,
                                   similarity)

_CONTROL = tuple(PINNED) + tuple(MOVING)
_N_PINNED = len(PINNED)


# The mouth area left out of the colour estimate is the lips grown by this much (eye
# distances).
MOUTH_MARGIN = 0.08


def destination_points(src_pts: np.ndarray, tgt_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Control points of the warp for one source frame.

    Args:
        src_pts, tgt_pts: shape = (478, 2): the source (bank) and target meshes.

    Returns:
        (src, dst), each shape = (K, 2) float64: where each control point is taken from in
        the source, and where it goes in the target.
    """
    m = similarity(src_pts[list(STABLE)], tgt_pts[list(STABLE)])
    src = src_pts[list(_CONTROL)].astype(np.float64)
    dst = np.concatenate([tgt_pts[list(PINNED)], apply(m, src_pts[list(MOVING)])])
    return src, dst


def region_mask(dst_pts: np.ndarray, tgt_pts: np.ndarray, box: tuple[int, int, int, int],
                cfg: MouthConfig) -> np.ndarray:
    """The drawn region's soft weight over ``box``, shape = (h, w) float32 in [0, 1].

    Args:
        dst_pts: shape = (478, 2): the mesh as drawn (pinned points from the target,
            moving ones from the aligned source).
        tgt_pts: shape = (478, 2): the target's own mesh.
        box: (x0, y0, x1, y1) full-res pixels the mask covers.
    """
    x0, y0, x1, y1 = box
    eye = eye_distance(tgt_pts)
    down = tgt_pts[152] - (tgt_pts[33] + tgt_pts[263]) / 2
    down = down / max(np.linalg.norm(down), 1e-6)
    below = cfg.below_chin * eye * down
    outline = np.concatenate([dst_pts[list(REGION)], tgt_pts[list(REGION)],
                              dst_pts[list(CHIN)] + below, tgt_pts[list(CHIN)] + below])
    hull = cv2.convexHull(np.round(outline - [x0, y0]).astype(np.int32))
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    r = max(1, int(round(cfg.feather * eye)))
    # Feathered inwards: the weight reaches 0 at the outline (a distance transform is
    # cheaper than an erosion by a large disc at 4K).
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    soft = np.clip(dist / (2.0 * r), 0.0, 1.0)
    return (soft * soft * (3.0 - 2.0 * soft)).astype(np.float32)  # smoothstep


def warp_source(src_rgb: np.ndarray, src_box: tuple[int, int, int, int], src: np.ndarray,
                dst: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The source crop warped piecewise-affinely so that ``src`` points land on ``dst``.

    Args:
        src_rgb: shape = (h, w, 3) float32: the source crop, covering ``src_box``.
        src_box: (x0, y0, x1, y1) of the crop in the source frame's pixels.
        src, dst: shape = (K, 2): control points (source frame / target frame pixels).
        box: the output box in target-frame pixels.

    Returns:
        shape = (box h, box w, 3) float32; pixels outside the control points' hull are
        mapped by the similarity of the nearest... (the whole box is covered: its corners
        are control points carried by the least-squares affine of all the points).
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    # The box's corners, carried by the affine that best fits all control points, so the
    # triangulation covers every output pixel.
    a, *_ = np.linalg.lstsq(np.c_[dst, np.ones(len(dst))], src, rcond=None)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    dst_all = np.concatenate([dst, corners])
    src_all = np.concatenate([src, np.c_[corners, np.ones(4)] @ a])
    tri = Delaunay(dst_all)
    label = np.full((h, w), -1, np.int32)
    maps = np.zeros((len(tri.simplices), 2, 3), np.float64)
    for k, s in enumerate(tri.simplices):
        d = dst_all[s]
        e1, e2 = d[1] - d[0], d[2] - d[0]
        if abs(e1[0] * e2[1] - e1[1] * e2[0]) < 1e-9:
            continue
        maps[k] = cv2.getAffineTransform(d.astype(np.float32), src_all[s].astype(np.float32))
        cv2.fillConvexPoly(label, np.round(d - [x0, y0]).astype(np.int32), k)
    # Pixels no triangle claimed (rounding at the rim): the nearest claimed one's map.
    if (label < 0).any():
        holes = (label < 0).astype(np.uint8)
        _, idx = cv2.distanceTransformWithLabels(holes, cv2.DIST_L2, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(holes == 0)
        lut = np.full(idx.max() + 1, -1, np.int32)
        lut[idx[ys, xs]] = label[ys, xs]
        label = np.where(label < 0, lut[idx], label)
    # Each pixel's source position through its triangle's affine, in crop pixels (the
    # affines are taken relative to the box's corner so float32 keeps sub-pixel precision
    # at 4K).
    maps[:, :, 2] += maps[:, :, 0] * x0 + maps[:, :, 1] * y0
    maps[:, :, 2] -= np.array(src_box[:2], np.float64)
    coef = maps.reshape(-1, 6).astype(np.float32)
    lab = np.maximum(label, 0)
    gx = np.arange(w, dtype=np.float32)[None, :]
    gy = np.arange(h, dtype=np.float32)[:, None]
    mx = coef[lab, 0] * gx + coef[lab, 1] * gy + coef[lab, 2]
    my = coef[lab, 3] * gx + coef[lab, 4] * gy + coef[lab, 5]
    # Lanczos: measured 0.99 of the input's mouth sharpness where cubic keeps 0.95.
    return cv2.remap(src_rgb, mx, my, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)


def _lips_mask(points: np.ndarray, box, grow: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    poly = [np.round(points[list(LIP_OUTER)] - [x0, y0]).astype(np.int32)]
    cv2.fillPoly(m, poly, 1)
    if grow > 0:  # grown by drawing the outline thick (a dilation by a disc costs more)
        cv2.polylines(m, poly, True, 1, thickness=2 * grow + 1)
    return m.astype(np.float32)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` pixels, done at a reduced size when it is large (the
    result is a low-pass anyway; at 4K a full-size blur would cost ten times as much)."""
    h, w = x.shape[:2]
    f = max(1.0, sigma / 3.0)
    if f <= 1.5:
        return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / f, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(x.shape)


def _normalised_blur(a: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    num = _smooth(a * weight[..., None], sigma)
    return num / np.maximum(_smooth(weight, sigma), 1e-4)[..., None]


def match_colour(warped: np.ndarray, target: np.ndarray, exclude: np.ndarray,
                 sigma: float) -> np.ndarray:
    """``warped`` with the low frequencies of ``target``: the difference of the two,
    blurred over the pixels outside ``exclude`` (normalised, so the skin around fills the
    excluded mouth in), added to ``warped``."""
    keep = 1.0 - np.clip(exclude, 0.0, 1.0)
    return warped + _normalised_blur(target - warped, keep, sigma)


def render_face(target: np.ndarray, box: tuple[int, int, int, int], tgt_pts: np.ndarray,
                sources: list[tuple[np.ndarray, tuple[int, int, int, int], np.ndarray, float]],
                cfg: MouthConfig) -> tuple[np.ndarray, np.ndarray]:
    """The new lower face over ``box`` of the target frame.

    Args:
        target: shape = (h, w, 3) float32 RGB in [0, 1]: the target frame over ``box``.
        box: (x0, y0, x1, y1) full-res pixels.
        tgt_pts: shape = (478, 2): the target frame's mesh.
        sources: per bank frame to blend: (its crop, the crop's box in its frame, its mesh,
            its weight); weights sum to 1.

    Returns:
        (rgb, alpha): shape = (h, w, 3) and (h, w), float32; write ``rgb`` over the frame
        with weight ``alpha``.
    """
    eye = eye_distance(tgt_pts)
    grow = max(1, int(round(MOUTH_MARGIN * eye)))
    # Several sources (a cross-fade) are warped to one shape, the weighted mean of theirs:
    # a morph, not a double exposure of two mouths.
    pairs = [destination_points(src_pts, tgt_pts) for _, _, src_pts, _ in sources]
    dst = sum(w * d for (_, d), (*_, w) in zip(pairs, sources))
    drawn = tgt_pts.astype(np.float64).copy()
    drawn[list(_CONTROL)] = dst
    alpha = region_mask(drawn, tgt_pts, box, cfg)
    rgb = target.copy()
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        return rgb, alpha
    # Only the region's bounding box (and some skin around it, for the colour match) is
    # warped: the box around the whole lower face is twice its size.
    m = int(round(0.15 * eye))
    x0, y0, x1, y1 = box
    sub = (x0 + max(int(xs.min()) - m, 0), y0 + max(int(ys.min()) - m, 0),
           x0 + min(int(xs.max()) + 1 + m, x1 - x0), y0 + min(int(ys.max()) + 1 + m, y1 - y0))
    part = (slice(sub[1] - y0, sub[3] - y0), slice(sub[0] - x0, sub[2] - x0))
    tgt_sub = target[part]
    mouths = np.maximum(_lips_mask(drawn, sub, grow), _lips_mask(tgt_pts, sub, grow))
    layers = [match_colour(warp_source(crop, crop_box, src, dst, sub), tgt_sub, mouths,
                           cfg.colour_sigma * eye)
              for (src, _), (crop, crop_box, _, _) in zip(pairs, sources)]
    rgb[part] = np.clip(blend_layers(layers, [w for *_, w in sources], DETAIL_SIGMA * eye),
                        0.0, 1.0)
    return rgb, alpha


# Scale (eye distances) below which a blend's detail is kept at full strength.
DETAIL_SIGMA = 0.03


def blend_layers(layers: list[np.ndarray], weights: list[float], sigma: float) -> np.ndarray:
    """The weighted mean of ``layers`` (already warped to one shape), its fine detail kept.

    A plain mean of two mouths' textures (pores, teeth edges, lip lines that do not fall
    on the same pixels) is blurrier than either: the variance of the mean of two
    uncorrelated textures at equal weights is half theirs. So the layers' low frequencies
    (Gaussian of ``sigma`` pixels) are averaged as they are, and their detail (each layer
    less its low frequencies) is averaged and scaled by ``1 / sqrt(sum(w**2))``, which
    restores the detail's variance (variance-preserving blending, as in Heitz & Neyret,
    "High-performance by-example noise using a histogram-preserving blending operator",
    2018). One layer is returned as it is.

    Args:
        layers: each shape = (h, w, 3) float32.
        weights: one per layer, summing to 1.
        sigma: the detail scale in pixels.
    """
    if len(layers) == 1:
        return layers[0]
    w = np.asarray(weights, np.float64)
    gain = np.float32(1.0 / np.sqrt(max(float((w * w).sum()), 1e-6)))
    low = [cv2.GaussianBlur(x, (0, 0), sigmaX=max(sigma, 0.5)) for x in layers]
    mean_low = sum(np.float32(wi) * lo for wi, lo in zip(w, low))
    detail = sum(np.float32(wi) * (x - lo) for wi, x, lo in zip(w, layers, low))
    return mean_low + gain * detail


def render_box(tgt_pts: np.ndarray, layout: PixelLayout) -> tuple[int, int, int, int]:
    """The box of the target frame the render may change, on the chroma grid: the region's
    outline with room for a source whose mouth opens wider or whose jaw drops further, and
    for the skin the colour match reads around it."""
    eye = eye_distance(tgt_pts)
    p = tgt_pts[list(set(REGION) | set(CHIN))]
    x0, y0 = p.min(0) - 0.25 * eye
    x1, y1 = p.max(0) + [0.25 * eye, 0.45 * eye]
    return grid_box((int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))),
                    layout)
