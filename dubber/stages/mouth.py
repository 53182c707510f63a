"""Mouth stage: each planned face gets the actor's own mouth, warped and blended in place.

Reads ``faces``, ``frames`` and ``color``; writes the new lower faces into ``frames`` (in
place, inside each face's region only; everything else stays bit-exact) and moves the faces
it drew from ``faces`` to ``rendered`` (the watermark marks them), so the model stages after
it (the VQ generator path) draw only the faces the plan had no bank frame for.

A hand before the face (kept with the bank, :mod:`dubber.faces.hands`) stays in front of
the new mouth: the drawn region's weight is 0 over the hands' silhouettes of the frame and
of its two neighbours (and the paste of the model stages leaves them too, for the faces
passed on to it: ``chunk.hands``). A hand over the lips themselves would leave half the old mouth
beside half the new one, so there the face keeps its own mouth: it fades out over the
``mouth.fade`` frames before the hand reaches the lips and back in after, and no renderer
draws it (the VQ path neither).
"""

from __future__ import annotations

import numpy as np

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.faces.hands import NO_HANDS, covers, silhouette
from dubber.faces.landmarks import LIP_OUTER
from dubber.media.color import rgb_to_yuv_region, yuv_region_to_rgb
from dubber.mouth.bank import MouthBank
from dubber.mouth.geometry import eye_distance
from dubber.mouth.plan import PlannedFace
from dubber.mouth.warp import render_box, render_face
from dubber.stages.common import color_spec

LIP_GROW = 0.15  # eye distances around the lips a hand must keep out of for a new mouth


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
        self.hidden = 0  # faces left alone: a hand before their lips
        self._lips_hidden: dict[tuple[int, int], bool] = {}

    def known_points(self, track_id: int, frame: int) -> np.ndarray | None:
        """The face mesh of ``track_id`` on ``frame`` from its bank, or None."""
        bank = self.banks.get(track_id)
        row = None if bank is None else bank.row(frame)
        return None if row is None else bank.points[row].astype(np.float64)

    def hands_at(self, track_id: int, frame: int) -> np.ndarray:
        """The hands before the face of ``track_id`` on ``frame`` (from its bank)."""
        bank = self.banks.get(track_id)
        return NO_HANDS if bank is None else bank.hands_at(frame)

    def lips_hidden(self, track_id: int, frame: int) -> bool:
        """Whether a hand reaches the lips (grown by :data:`LIP_GROW`) on ``frame``."""
        key = (track_id, frame)
        if key not in self._lips_hidden:
            if len(self._lips_hidden) > 4096:  # frames are visited in order
                self._lips_hidden = {k: v for k, v in self._lips_hidden.items()
                                     if k[1] >= frame - 64}
            hands = self.hands_at(track_id, frame)
            pts = self.known_points(track_id, frame) if len(hands) else None
            self._lips_hidden[key] = pts is not None and covers(
                hands, pts[list(LIP_OUTER)], LIP_GROW * eye_distance(pts))
        return self._lips_hidden[key]

    def hand_weight(self, track_id: int, frame: int, fade: int) -> float:
        """The new mouth's weight on ``frame`` for the hands: 0 where one is before the
        lips, rising to 1 over the ``fade`` frames either side."""
        for d in range(fade + 1):
            if self.lips_hidden(track_id, frame - d) or self.lips_hidden(track_id, frame + d):
                return d / (fade + 1)
        return 1.0

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
                weight, hands = 1.0, NO_HANDS
                if cfg.mouth.keep_hands:
                    weight = self.hand_weight(face.track_id, idx, max(cfg.mouth.fade, 0))
                    if weight <= 0.0:  # a hand before the lips: the face keeps its mouth
                        self.hidden += 1
                        continue
                    hands = np.concatenate([self.hands_at(face.track_id, f)
                                            for f in (idx - 1, idx, idx + 1)])
                if planned is None or tgt_pts is None:
                    if len(hands):  # the paste of the model stages leaves them too
                        chunk.hands[(i, face.track_id)] = hands
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
                if len(hands):
                    alpha = alpha * (1.0 - silhouette(hands, box))
                alpha = alpha * weight
                rgb_to_yuv_region(rgb, chunk.frames, i, box, spec, alpha * planned.alpha)
                chunk.rendered[i].append(face)
                self.drawn += 1
            chunk.faces[i] = rest
        return chunk
