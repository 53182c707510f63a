"""Face-mesh geometry of the lower face: which points are stable, which move with the mouth,
and where the renderer may draw.

MediaPipe face-mesh indices (478-point mesh), picked on a frontal face:

- :data:`STABLE`: eye corners, nose bridge, nose base and upper cheeks. They do not move
  when the mouth opens, so a similarity transform fitted on them aligns one frame of an
  actor onto another (head position, size and roll) without the mouth pulling it.
- :data:`PINNED`: the rim of the drawn region (under the nose, the cheeks beside the mouth)
  and points further out. The warp keeps them where the target frame has them, so the
  region's edge lands exactly on the target face.
- :data:`MOVING`: lips, chin and the jaw line: they come from the chosen frame, so lips,
  jaw and chin move together.
- :data:`REGION`: the outline of the drawn region (mouth, chin and the inner cheeks, inside
  the jaw line), in order around it.
"""

from __future__ import annotations

import numpy as np

from dubber.faces.landmarks import LIP_INNER, LIP_OUTER

EYE_CORNERS = (33, 263)
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 50, 280, 205, 425,
          187, 411, 123, 352)
# The region's rim under the nose and beside the mouth, and a ring further out.
PINNED = (206, 165, 167, 164, 393, 391, 426, 216, 212, 214, 436, 432, 434, 203, 423,
          207, 427, 147, 376, 192, 416, 213, 433,
          98, 327, 2, 97, 326, 205, 425, 187, 411, 50, 280, 123, 352, 132, 361, 58, 288)
MOVING = tuple(sorted(set(LIP_OUTER) | set(LIP_INNER) | {
    18, 200, 199, 175, 152, 83, 313, 201, 421, 208, 428, 171, 396, 148, 377, 176, 400,
    140, 369, 149, 378, 170, 395, 32, 262, 194, 418, 182, 406, 204, 424, 106, 335, 43, 273,
    202, 422, 210, 430, 169, 394, 150, 379, 135, 364, 136, 365, 172, 397, 138, 367, 211,
    431, 84, 314, 17, 16, 15, 14, 92, 322, 186, 410, 57, 287}))
# Around the drawn region, clockwise on the image from under the left nostril. On the sides
# it keeps inside the jaw line (a turned head shows background past it, and a source face
# of another yaw puts its jaw line elsewhere); at the bottom it is the chin.
REGION = (206, 165, 167, 164, 393, 391, 426, 436, 432, 422, 431, 395, 369, 400, 377, 152,
          148, 176, 140, 170, 211, 202, 212, 216)
# The chin line: the region reaches below it (a jaw that drops must not show the old chin).
CHIN = (176, 148, 152, 377, 400)

assert not set(PINNED) & set(MOVING), "a point cannot be both pinned and moving"


def eye_distance(points: np.ndarray) -> float:
    """Distance between the outer eye corners, the face's scale, in the points' pixels."""
    return float(np.linalg.norm(points[EYE_CORNERS[1]] - points[EYE_CORNERS[0]]))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform (rotation, uniform scale, shift) taking
    ``src`` to ``dst`` (Umeyama).

    Args:
        src, dst: shape = (K, 2), float.

    Returns:
        shape = (2, 3) float64, ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ sign) / max(var, 1e-12))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (K, 2) through the affine ``m`` (2, 3)."""
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def pose_shape(points: np.ndarray) -> np.ndarray:
    """The :data:`STABLE` points with position, scale and roll taken out, flattened.

    Two frames of one actor with the same head pose (yaw, pitch) give nearly the same
    shape; the Euclidean distance between shapes is a pose distance in eye-distance units.

    Args:
        points: shape = (..., 478, 2).

    Returns:
        shape = (..., 2 * len(STABLE)), float32.
    """
    p = np.asarray(points, np.float64)[..., list(STABLE), :]
    left = np.asarray(points, np.float64)[..., EYE_CORNERS[0], :]
    right = np.asarray(points, np.float64)[..., EYE_CORNERS[1], :]
    across = right - left
    scale = np.maximum(np.linalg.norm(across, axis=-1), 1e-6)
    cos, sin = across[..., 0] / scale, across[..., 1] / scale
    c = p - p.mean(-2, keepdims=True)
    x = (c[..., 0] * cos[..., None] + c[..., 1] * sin[..., None]) / scale[..., None]
    y = (-c[..., 0] * sin[..., None] + c[..., 1] * cos[..., None]) / scale[..., None]
    return np.concatenate([x, y], -1).astype(np.float32)
