"""Full-resolution frames kept in the input's own planar YUV layout.

Frames travel through the pipeline as the decoder produced them (Y, U, V planes, 8-bit in
``uint8`` or 10/12/16-bit in ``uint16``), not as RGB. Only the face regions that a stage
changes are converted to RGB and back; every other pixel reaches the encoder bit-exact, and
the full-frame colour conversion that an RGB pipeline pays twice per frame is never done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Working formats: planar YUV at 4:2:0, 4:2:2 or 4:4:4, 8 to 16 bits. Any other decoder
# output (nv12, p010, rgb24, yuvj420p, ...) is converted to the nearest of these on decode.
_CHROMA = {"420": (1, 1), "422": (1, 0), "444": (0, 0)}


@dataclass(frozen=True)
class PixelLayout:
    """Geometry and sample format of one frame's three planes."""

    width: int  # luma width in pixels (coded, i.e. before any display rotation)
    height: int  # luma height in pixels
    bit_depth: int  # 8, 10, 12 or 16
    chroma: str  # "420", "422" or "444"

    @property
    def pix_fmt(self) -> str:
        """FFmpeg name of the layout, e.g. ``yuv420p`` or ``yuv422p10le``."""
        suffix = "" if self.bit_depth == 8 else f"{self.bit_depth}le"
        return f"yuv{self.chroma}p{suffix}"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth == 8 else np.uint16)

    @property
    def chroma_shift(self) -> tuple[int, int]:
        """log2 of the horizontal and vertical chroma subsampling."""
        return _CHROMA[self.chroma]

    @property
    def chroma_size(self) -> tuple[int, int]:
        """(width, height) of the U and V planes (rounded up, as FFmpeg does)."""
        sx, sy = self.chroma_shift
        return -(-self.width >> sx), -(-self.height >> sy)

    @property
    def frame_bytes(self) -> int:
        cw, ch = self.chroma_size
        return (self.width * self.height + 2 * cw * ch) * self.dtype.itemsize

    @property
    def max_value(self) -> int:
        return (1 << self.bit_depth) - 1

    @classmethod
    def from_pix_fmt(cls, pix_fmt: str, width: int, height: int) -> "PixelLayout":
        """Parse a working-format name such as ``yuv420p10le``; ValueError for others."""
        if not (pix_fmt.startswith("yuv") and len(pix_fmt) >= 7 and pix_fmt[6] == "p"):
            raise ValueError(f"not a planar YUV working format: {pix_fmt}")
        chroma, rest = pix_fmt[3:6], pix_fmt[7:]
        if chroma not in _CHROMA:
            raise ValueError(f"unsupported chroma layout in {pix_fmt}")
        depth = 8 if rest == "" else int(rest[:-2]) if rest.endswith("le") else -1
        if depth not in (8, 10, 12, 16):
            raise ValueError(f"unsupported bit depth in {pix_fmt}")
        return cls(width, height, depth, chroma)


@dataclass
class FrameBatch:
    """N full-resolution frames as three stacked planes.

    Attributes:
        layout: the frames' :class:`PixelLayout`.
        y: luma, shape = (N, height, width).
        u, v: chroma, shape = (N, chroma_height, chroma_width).
    All three share ``layout.dtype``; values span 0 .. ``layout.max_value`` (limited or full
    range as the video's ``color_range`` says).
    """

    layout: PixelLayout
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def empty(cls, layout: PixelLayout, n: int) -> "FrameBatch":
        cw, ch = layout.chroma_size
        return cls(
            layout,
            np.empty((n, layout.height, layout.width), layout.dtype),
            np.empty((n, ch, cw), layout.dtype),
            np.empty((n, ch, cw), layout.dtype),
        )

    def __len__(self) -> int:
        return self.y.shape[0]

    def planes(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three planes of frame ``i`` (views, writable)."""
        return self.y[i], self.u[i], self.v[i]

    def truncate(self, n: int) -> "FrameBatch":
        """The first ``n`` frames (views)."""
        return FrameBatch(self.layout, self.y[:n], self.u[:n], self.v[:n])

    @property
    def nbytes(self) -> int:
        return self.y.nbytes + self.u.nbytes + self.v.nbytes
