"""Mouth stage: each planned face gets the actor's own mouth, warped and blended in place.

Reads ``faces``, ``frames`` and ``color``; writes the new lower faces into ``frames`` (in
place, inside each face's region only; everything else stays bit-exact) and moves the faces
it drew from ``faces`` to ``rendered`` (the watermark marks them), so the model stages after
it (the VQ generator path) draw only the faces the plan had no bank frame for.
"""

from __future__ import annotations

import numpy as np

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.media.color import rgb_to_yuv_region, yuv_region_to_rgb
from dubber.mouth.bank import MouthBank
from dubber.mouth.plan import PlannedFace
from dubber.mouth.warp import render_box, render_face
from dubber.stages.common import color_spec


class MouthStage:
    """A render stage ``stage(chunk, models, cfg) -> chunk`` drawing the planned faces.

    Args:
        plan: (frame, track id) -> the bank frames that face shows
            (:func:`dubber.mouth.plan.make_plan`).
        banks: track id -> its bank.
    """

    def __init__(self, plan: dict[tuple[int, int], PlannedFace],
                 banks: dict[int, MouthBank]) -> None:
        self.plan = plan
        self.banks = banks
        self.drawn = 0  # faces drawn so far

    def known_points(self, track_id: int, frame: int) -> np.ndarray | None:
        """The face mesh of ``track_id`` on ``frame`` from its bank, or None."""
        bank = self.banks.get(track_id)
        row = None if bank is None else bank.row(frame)
        return None if row is None else bank.points[row].astype(np.float64)

    def __call__(self, chunk: Chunk, models: object, cfg: Config) -> Chunk:
        spec = color_spec(chunk)
        lay = chunk.frames.layout
        chunk.rendered = [[] for _ in range(len(chunk))]
        for i, idx in enumerate(chunk.frame_indices.tolist()):
            if i >= len(chunk.faces):
                break
            rest = []
            for face in chunk.faces[i]:
                planned = self.plan.get((idx, face.track_id))
                tgt_pts = self.known_points(face.track_id, idx)
                if planned is None or tgt_pts is None:
                    rest.append(face)
                    continue
                bank = self.banks[face.track_id]
                box = render_box(tgt_pts, lay)
                target = yuv_region_to_rgb(chunk.frames, i, box, spec)
                sources = []
                for r, w in zip(planned.blend.rows, planned.blend.weights):
                    crop, crop_box = bank.crop(r)
                    sources.append((crop, crop_box, bank.points[r].astype(np.float64), w))
                rgb, alpha = render_face(target, box, tgt_pts, sources, cfg.mouth)
                rgb_to_yuv_region(rgb, chunk.frames, i, box, spec, alpha * planned.alpha)
                chunk.rendered[i].append(face)
                self.drawn += 1
            chunk.faces[i] = rest
        return chunk
