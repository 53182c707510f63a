"""Colour conversion of a rectangle of planar YUV frames to RGB and back.

Only face regions are converted (see :mod:`dubber.media.frames`). The matrix (BT.601, 709,
2020 non-constant luminance), the range (limited "tv" or full "pc") and the bit depth
(8 to 16) are honoured. Chroma is upsampled by sample repetition when read and averaged over
each chroma sample's luma pixels when written, so a region that is read and written back
unchanged round-trips to within one code value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.media.frames import FrameBatch

# (Kr, Kb) luma coefficients; Kg = 1 - Kr - Kb.
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
# FFmpeg colorspace names -> ours (bt2020c is treated as non-constant luminance).
_FFMPEG_MATRICES = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "fcc": "bt601",
                    "bt2020nc": "bt2020", "bt2020c": "bt2020"}


@dataclass(frozen=True)
class ColorSpec:
    """How a video's YUV codes map to RGB."""

    matrix: str = "bt709"  # bt601, bt709 or bt2020 (FFmpeg: smpte170m/bt470bg, bt709, bt2020nc)
    full_range: bool = False  # True for "pc"/"jpeg" range, False for limited "tv" range

    def __post_init__(self) -> None:
        if self.matrix not in MATRICES:
            raise ValueError(f"unknown colour matrix {self.matrix!r}; use {', '.join(MATRICES)}")

    @classmethod
    def guess(cls, width: int, height: int) -> "ColorSpec":
        """What players assume for untagged video: BT.601 below 720p, BT.709 otherwise."""
        return cls("bt601" if min(width, height) < 720 else "bt709", False)

    @classmethod
    def from_names(cls, matrix: str, color_range: str, width: int, height: int) -> "ColorSpec":
        """From FFmpeg's names (``probe``'s ColorInfo.matrix and .range); "unknown" or an
        unsupported matrix falls back to :meth:`guess`, an unknown range to limited."""
        m = _FFMPEG_MATRICES.get(matrix) or cls.guess(width, height).matrix
        return cls(m, color_range == "pc")


def _scales(bit_depth: int, full_range: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) in code values."""
    k = float(1 << (bit_depth - 8))
    if full_range:
        maxv = float((1 << bit_depth) - 1)
        return 0.0, maxv, float(1 << (bit_depth - 1)), maxv
    return 16 * k, 219 * k, 128 * k, 224 * k


def check_region(frames: FrameBatch, box: tuple[int, int, int, int]) -> None:
    """Raise ValueError unless ``box`` = (x0, y0, x1, y1) lies inside the frame, is not empty
    and starts on the chroma grid (x0, y0 multiples of the chroma subsampling)."""
    x0, y0, x1, y1 = box
    lay = frames.layout
    sx, sy = lay.chroma_shift
    if not (0 <= x0 < x1 <= lay.width and 0 <= y0 < y1 <= lay.height):
        raise ValueError(f"region {box} is empty or outside the {lay.width}x{lay.height} frame")
    if x0 % (1 << sx) or y0 % (1 << sy):
        raise ValueError(f"region {box} does not start on the chroma grid of {lay.pix_fmt}")
    if (x1 % (1 << sx) and x1 != lay.width) or (y1 % (1 << sy) and y1 != lay.height):
        raise ValueError(f"region {box} does not end on the chroma grid of {lay.pix_fmt}")


def yuv_region_to_rgb(frames: FrameBatch, index: int, box: tuple[int, int, int, int],
                      spec: ColorSpec) -> np.ndarray:
    """RGB of a rectangle of frame ``index``.

    Args:
        frames: the chunk's frames.
        index: frame index within ``frames``.
        box: (x0, y0, x1, y1) in luma pixels, end-exclusive; see :func:`check_region`.
        spec: colour matrix and range.

    Returns:
        shape = (y1 - y0, x1 - x0, 3), float32 RGB in [0, 1].
    """
    check_region(frames, box)
    x0, y0, x1, y1 = box
    sx, sy = frames.layout.chroma_shift
    yo, ys, co, cs = _scales(frames.layout.bit_depth, spec.full_range)
    y_plane, u_plane, v_plane = frames.planes(index)
    y = (y_plane[y0:y1, x0:x1].astype(np.float32) - yo) / ys
    cy0, cy1 = y0 >> sy, -(-y1 >> sy)
    cx0, cx1 = x0 >> sx, -(-x1 >> sx)

    def upsample(plane: np.ndarray) -> np.ndarray:
        c = (plane[cy0:cy1, cx0:cx1].astype(np.float32) - co) / cs
        c = np.repeat(np.repeat(c, 1 << sy, axis=0), 1 << sx, axis=1)
        return c[: y1 - y0, : x1 - x0]

    cb, cr = upsample(u_plane), upsample(v_plane)
    kr, kb = MATRICES[spec.matrix]
    kg = 1.0 - kr - kb
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0)


def rgb_to_yuv_region(rgb: np.ndarray, frames: FrameBatch, index: int,
                      box: tuple[int, int, int, int], spec: ColorSpec,
                      alpha: np.ndarray | None = None) -> None:
    """Write RGB into a rectangle of frame ``index``, in place; pixels outside are untouched.

    Args:
        rgb: shape = (y1 - y0, x1 - x0, 3), float RGB in [0, 1] (clipped).
        frames, index, box, spec: as in :func:`yuv_region_to_rgb`.
        alpha: shape = (y1 - y0, x1 - x0), float in [0, 1]: blend ``rgb`` over the frame
            with this weight, per plane in YUV (chroma takes the mean over its pixels).
            Where it is 0 (a whole chroma pixel for the chroma planes), the frame's samples
            stay bit-exact. None writes ``rgb`` as it is.
    """
    check_region(frames, box)
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if rgb.shape != (h, w, 3):
        raise ValueError(f"rgb has shape {rgb.shape}, the region needs {(h, w, 3)}")
    lay = frames.layout
    sx, sy = lay.chroma_shift
    yo, ys, co, cs = _scales(lay.bit_depth, spec.full_range)
    kr, kb = MATRICES[spec.matrix]
    rgb = np.clip(rgb.astype(np.float32), 0.0, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    maxv = lay.max_value
    if alpha is not None and alpha.shape != (h, w):
        raise ValueError(f"alpha has shape {alpha.shape}, the region needs {(h, w)}")
    y_plane, u_plane, v_plane = frames.writable_planes(index)
    fy, fx = 1 << sy, 1 << sx
    ph, pw = -(-h // fy) * fy, -(-w // fx) * fx

    def down(c: np.ndarray) -> np.ndarray:
        c = np.pad(c, ((0, ph - h), (0, pw - w)), mode="edge")
        return c.reshape(ph // fy, fy, pw // fx, fx).mean(axis=(1, 3))

    def put(plane: np.ndarray, region: tuple[slice, slice], value: np.ndarray,
            a: np.ndarray | None) -> None:
        if a is not None:
            old = plane[region].astype(np.float32)
            value = old + a * (value - old)
        plane[region] = np.clip(np.rint(value), 0, maxv).astype(lay.dtype)

    put(y_plane, (slice(y0, y1), slice(x0, x1)), y * ys + yo, alpha)
    cy0, cx0 = y0 >> sy, x0 >> sx
    csl = (slice(cy0, cy0 + ph // fy), slice(cx0, cx0 + pw // fx))
    ca = None if alpha is None else down(alpha.astype(np.float32))
    if ca is not None and not ca.any():
        return
    put(u_plane, csl, down(cb) * cs + co, ca)
    put(v_plane, csl, down(cr) * cs + co, ca)
