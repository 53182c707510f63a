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


class FrameBatch:
    """N full-resolution frames, held as the decoder's own frames (no copy).

    ``planes(i)`` gives read-only numpy views of frame ``i``'s Y, U and V planes;
    ``writable_planes(i)`` first makes that frame's buffer private (copying it only if the
    decoder still references it, e.g. as a reference picture) and gives writable views.
    Frames that no stage writes to reach the encoder untouched and uncopied.

    Plane shapes: Y = (height, width), U and V = (chroma_height, chroma_width); dtype is
    ``layout.dtype``; values span 0 .. ``layout.max_value`` (limited or full range as the
    video's ``color_range`` says).
    """

    def __init__(self, layout: PixelLayout, frames: list) -> None:
        self.layout = layout
        self.frames = frames  # list[av.VideoFrame] in layout.pix_fmt

    @classmethod
    def empty(cls, layout: PixelLayout, n: int) -> "FrameBatch":
        """``n`` newly allocated (uninitialised) frames."""
        import av

        return cls(layout, [av.VideoFrame(layout.width, layout.height, layout.pix_fmt)
                            for _ in range(n)])

    @classmethod
    def from_arrays(cls, layout: PixelLayout, y: np.ndarray, u: np.ndarray,
                    v: np.ndarray) -> "FrameBatch":
        """Frames from stacked planes, shapes (N, H, W), (N, Hc, Wc), (N, Hc, Wc)."""
        batch = cls.empty(layout, len(y))
        for i in range(len(y)):
            for dst, src in zip(batch.writable_planes(i), (y[i], u[i], v[i])):
                dst[...] = src
        return batch

    def __len__(self) -> int:
        return len(self.frames)

    def planes(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only views of frame ``i``'s three planes."""
        views = plane_views(self.frames[i], self.layout)
        for view in views:
            view.flags.writeable = False
        return views

    def writable_planes(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Writable views of frame ``i``'s planes (copy-on-write of a shared buffer)."""
        self.frames[i].make_writable()
        return plane_views(self.frames[i], self.layout)

    def stack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of all planes stacked: (N, H, W), (N, Hc, Wc), (N, Hc, Wc)."""
        per_frame = [self.planes(i) for i in range(len(self))]
        return tuple(np.stack([p[k] for p in per_frame]) for k in range(3))


def plane_views(frame, layout: PixelLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy views of an ``av.VideoFrame``'s planes, cropped to the picture (no copy)."""
    dtype = layout.dtype
    cw, ch = layout.chroma_size
    sizes = ((layout.width, layout.height), (cw, ch), (cw, ch))
    views = []
    for plane, (w, h) in zip(frame.planes, sizes):
        rows = np.frombuffer(plane, dtype).reshape(-1, plane.line_size // dtype.itemsize)
        views.append(rows[:h, :w])
    return tuple(views)
