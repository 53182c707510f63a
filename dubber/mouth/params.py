"""Mouth parameters from face-mesh points: the units every mouth track is in.

All three are ratios to the distance between the outer eye corners (mesh points 33 and
263), so they do not depend on the face's size in pixels, and are measured in the plane of
the mouth (the line between the corners gives "across", its normal "down"), so a rolled
head reads the same:

- ``opening``: the mean inner-lip gap (the same quantity as
  :func:`dubber.faces.landmarks.lip_aperture`); about 0 shut, 0.3-0.5 wide open.
- ``width``: mouth corner to corner (points 61 and 291); spread lips (EE) are wider,
  rounded ones (OO) narrower; about 0.45-0.65 at rest.
- ``rounding``: the visible thickness of the lips (outer height minus inner gap) over the
  mouth width: pursed, pushed-out lips look thick and narrow, spread lips thin and wide;
  about 0.2-0.5.
"""

from __future__ import annotations

import numpy as np

# The names, in the order mouth_params returns them.
PARAMS = ("opening", "width", "rounding")

_EYE_CORNERS = (33, 263)
_CORNERS = (61, 291)
# Inner-lip upper/lower pairs (as lip_aperture) and outer-lip upper/lower pairs.
_INNER_PAIRS = ((82, 87), (13, 14), (312, 317))
_OUTER_PAIRS = ((37, 84), (0, 17), (267, 314))


def mouth_params(points: np.ndarray) -> np.ndarray:
    """The mouth parameters of one face or of many.

    Args:
        points: shape = (..., 478, 2) or (..., 468+, 2+): face-mesh points, any pixel scale
            (only x and y are read).

    Returns:
        shape = (..., 3), float32: ``opening, width, rounding`` (see the module docstring).
    """
    p = np.asarray(points, np.float64)[..., :2]
    eyes = np.linalg.norm(p[..., _EYE_CORNERS[1], :] - p[..., _EYE_CORNERS[0], :], axis=-1)
    eyes = np.maximum(eyes, 1e-6)
    across = p[..., _CORNERS[1], :] - p[..., _CORNERS[0], :]
    width = np.linalg.norm(across, axis=-1)
    down = np.stack([-across[..., 1], across[..., 0]], -1) / np.maximum(width, 1e-6)[..., None]

    def gap(pairs):
        # Upper-to-lower distance measured along "down" (never negative).
        d = [np.abs(np.sum((p[..., b, :] - p[..., a, :]) * down, -1)) for a, b in pairs]
        return np.mean(d, axis=0)

    inner = gap(_INNER_PAIRS)
    outer = gap(_OUTER_PAIRS)
    opening = inner / eyes
    rounding = np.maximum(outer - inner, 0.0) / np.maximum(width, 1e-6)
    return np.stack([opening, width / eyes, rounding], -1).astype(np.float32)
