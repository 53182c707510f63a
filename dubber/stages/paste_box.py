"""Plain box paste: the generated face back into its square, in the frame's YUV.

A stand-in until the paste-back issue lands (mouth polygon, feathered seam): the whole
visible square of each face is replaced, every pixel outside it is left as decoded.
"""

from __future__ import annotations

import torch.nn.functional as F

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.media.color import rgb_to_yuv_region
from dubber.stages.common import color_spec
from dubber.stages.crop import visible_part


def paste_faces_box(chunk: Chunk, models: object, cfg: Config) -> Chunk:
    """Write ``extra["generated"]`` into ``chunk.frames`` at each face's square (in place)."""
    crops = chunk.extra["crops"]
    faces = chunk.extra["generated"]
    lay = chunk.frames.layout
    spec = color_spec(chunk)
    for m in range(len(crops)):
        sq = tuple(int(v) for v in crops.square[m])
        vis = visible_part(sq, lay)
        side = sq[2] - sq[0]
        img = F.interpolate(faces[m : m + 1].float(), size=(side, side), mode="bilinear",
                            antialias=True, align_corners=False)[0]
        rgb = ((img.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        rgb = rgb[vis[1] - sq[1] : vis[3] - sq[1], vis[0] - sq[0] : vis[2] - sq[0]]
        rgb_to_yuv_region(rgb, chunk.frames, int(crops.frame[m]), vis, spec)
    return chunk
