"""Hands in front of a face: found, drawn as a silhouette, and left in front of the new mouth.

An actor's hand often passes in front of the mouth (a gesture, a finger on the lips, a cup
or a phone held in the hand). A renderer that draws the new mouth over it paints the hand
away. MediaPipe's hand landmarker (its palm detector and hand-landmark models ship inside
the ``mediapipe`` wheel) finds the hands in a region around each face; each hand's 21
landmarks are drawn as a silhouette: the palm's polygon and a capsule per finger, as wide
as a finger (a share of the palm's width), a fingertip reaching past its last landmark,
grown by a margin for the model's error and for motion blur. The mouth bank keeps these
hands per frame (:mod:`dubber.mouth.bank`): the render leaves the silhouette's pixels as
they are, and a frame whose lower face a hand covers is never drawn from.

Everything here is in full-resolution coded pixels, like the face mesh; the detector sees
the region upright (the video's display rotation applied).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from dubber.faces.detect import quiet_native_stderr
from dubber.faces.landmarks import TrackGraphs
from dubber.faces.orient import points_to_coded, upright
from dubber.faces.yuv import crop_rgb
from dubber.media.color import ColorSpec
from dubber.media.frames import FrameBatch

CONTEXT = 3.5  # the region searched: a square this many face-box sides wide on the face
# (a hand before the mouth has its palm and wrist below and beside the face)
IMAGE_SIDE = 256  # longer side of the image the detector sees (its models read 192-224 px)
MAX_HANDS = 2
# The palm detector's score a new hand needs, and the hand model's presence score a hand
# needs on every frame. Static (each frame on its own, no presence check) at 0.5, the
# bank pass took hair beside profile_turn_224_en's jaw for a hand on 34 of its 128 frames
# (one at her lips); tracked with these, on 6 (none at her lips), while the boxer's hand
# in two_faces_splitscreen_720p is found on 354 of his 438 frames (static: 324).
MIN_DETECTION = 0.7
MIN_PRESENCE = 0.8
# The silhouette, in shares of the palm's width (index to little-finger knuckle):
FINGER_WIDTH = 0.32  # a finger's width
TIP = 0.5  # a fingertip reaches past its last landmark by this share of its last bone
MARGIN = 0.1  # the silhouette grown by this much (the model's error, motion blur) ...
MIN_MARGIN = 2.0  # ... and by at least this many pixels
FEATHER = 0.05  # its soft edge (Gaussian sigma)
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
PALM = (0, 1, 5, 9, 13, 17)
NO_HANDS = np.zeros((0, 21, 2), np.float32)


def context_region(face_box: Sequence[float], width: int, height: int,
                   context: float = CONTEXT) -> tuple[int, int, int, int]:
    """The square region (clipped to the frame) searched for hands around ``face_box``."""
    x0, y0, x1, y1 = face_box
    half = context * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx0, ry0 = int(max(np.floor(cx - half), 0)), int(max(np.floor(cy - half), 0))
    rx1 = int(min(np.ceil(cx + half), width))
    ry1 = int(min(np.ceil(cy + half), height))
    return rx0, ry0, max(rx1, rx0 + 1), max(ry1, ry0 + 1)


def _hand_graph():
    with quiet_native_stderr():
        import mediapipe as mp

        graph = mp.solutions.hands.Hands(
            static_image_mode=False, max_num_hands=MAX_HANDS, model_complexity=1,
            min_detection_confidence=MIN_DETECTION, min_tracking_confidence=MIN_PRESENCE)
        graph.process(np.zeros((64, 64, 3), np.uint8))  # start the graph
    return graph


class HandFinder(TrackGraphs):
    """MediaPipe's hand landmarker on the region around each face, one graph per track
    (its tracking state: a hand found is followed, and kept only while the hand model is
    sure it is a hand), made on the track's first frame and closed when the track leaves
    (:meth:`keep_only`), like the face mesh's. The bank pass reads every track from its
    first frame, so the same video gives the same hands."""

    def make(self):
        return _hand_graph()

    def find(self, key: object, frames: FrameBatch, i: int, face_box: Sequence[float],
             color: ColorSpec | None = None) -> np.ndarray:
        """The hands around track ``key``'s ``face_box`` on frame ``i`` of ``frames``.

        Returns:
            shape = (H, 21, 2), float32 (x, y) full-resolution coded pixels; H = 0 when none.
        """
        region = context_region(face_box, *self.size)
        x0, y0, x1, y1 = region
        k = IMAGE_SIDE / max(x1 - x0, y1 - y0)
        size = (max(int(round((x1 - x0) * k)), 1), max(int(round((y1 - y0) * k)), 1))
        image = upright(crop_rgb(frames, i, region, size, color), self.rotation)
        graph = self.graph(key)
        with quiet_native_stderr():
            res = graph.process(np.ascontiguousarray(image))
        if not res.multi_hand_landmarks:
            return NO_HANDS
        out = []
        for hand in res.multi_hand_landmarks:
            pts = np.array([(p.x, p.y) for p in hand.landmark], np.float64)
            if self.rotation:
                pts = points_to_coded(pts, self.rotation, 1.0, 1.0)
            out.append(pts * [x1 - x0, y1 - y0] + [x0, y0])
        return np.asarray(out, np.float32)


def _px(points: np.ndarray) -> np.ndarray:
    """Points to whole pixels (halves up, wherever the drawing's origin is)."""
    return np.floor(points + 0.5).astype(np.int32)


def palm_width(hand: np.ndarray) -> float:
    """Index to little-finger knuckle, the hand's scale in pixels."""
    return float(np.linalg.norm(hand[5] - hand[17]))


def silhouette(hands: np.ndarray, box: tuple[int, int, int, int],
               soft: bool = True) -> np.ndarray:
    """The hands drawn over ``box``.

    Args:
        hands: shape = (H, 21, 2): hand landmarks, full-resolution coded pixels.
        box: (x0, y0, x1, y1): the pixels to draw.
        soft: blur the edge (:data:`FEATHER`); else a hard 0/1 mask.

    Returns:
        shape = (y1 - y0, x1 - x0), float32 in [0, 1]: 1 where a hand is.
    """
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    for hand in np.asarray(hands, np.float64):
        if not np.all(np.isfinite(hand)):
            continue
        palm = max(palm_width(hand), 1.0)
        grow = max(MARGIN * palm, MIN_MARGIN)
        sigma = FEATHER * palm if soft else 0.0
        pad = int(np.ceil(3 * sigma)) + 1 if sigma >= 0.5 else 0  # the blur sees past the box
        m = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad), np.uint8)
        p = hand - [x0 - pad, y0 - pad]
        hull = cv2.convexHull(_px(p[list(PALM)]))
        cv2.fillConvexPoly(m, hull, 1)
        width = max(int(round(FINGER_WIDTH * palm + 2 * grow)), 1)
        cv2.polylines(m, [_px(p[list(PALM)])], True, 1,
                      max(int(round(2 * grow)), 1))
        for finger in FINGERS:
            c = p[list(finger)]
            c = np.vstack([c, c[-1] + TIP * (c[-1] - c[-2])])
            cv2.polylines(m, [_px(c)], False, 1, width)
        layer = m.astype(np.float32)
        if pad:
            k = 2 * pad + 1
            blurred = cv2.GaussianBlur(layer, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
            # the blur centred on the edge would let half the edge through: keep the
            # silhouette whole, and 2 px more (a chroma sample shared with a pixel of the
            # hand must not change), and feather outwards only from there
            solid = cv2.dilate(m, np.ones((5, 5), np.uint8)).astype(np.float32)
            layer = np.maximum(blurred * 2.0, solid).clip(0, 1)
            layer[layer < 1.0 / 256] = 0.0  # the Gaussian's far tail: no pixel's worth
            layer = layer[pad:-pad, pad:-pad]
        out = np.maximum(out, layer)
    return out


def covers(hands: np.ndarray, region: np.ndarray, grow: float = 0.0) -> bool:
    """Whether a hand's silhouette reaches into the polygon ``region`` (shape (K, 2), full
    resolution coded pixels: e.g. the lower face's outline, or the lips), grown by ``grow``
    pixels."""
    if len(hands) == 0:
        return False
    pts = np.asarray(region, np.float64)
    g = int(np.ceil(max(grow, 0.0)))
    box = (int(np.floor(pts[:, 0].min())) - g, int(np.floor(pts[:, 1].min())) - g,
           int(np.ceil(pts[:, 0].max())) + 1 + g, int(np.ceil(pts[:, 1].max())) + 1 + g)
    poly = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
    cv2.fillPoly(poly, [_px(pts - box[:2])], 1)
    if g:
        poly = cv2.dilate(poly, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1,) * 2))
    hand = silhouette(hands, box, soft=False)
    return bool(np.any((hand > 0) & (poly > 0)))
