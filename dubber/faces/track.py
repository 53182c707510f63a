"""Tracking: detections of consecutive frames linked into face tracks with stable ids.

Two steps:

1. :class:`Tracker`, online, frame by frame: each detection joins the live track whose last
   box overlaps it most (IoU >= ``match_iou``, or a centre within half a face size); the
   rest start new tracks. A track stays live ``max_gap`` frames after its last detection.
2. :func:`finalize_tracks`, once the whole clip and its shot cuts are known: tracks are
   split at cuts (a track never crosses one) and at gaps longer than ``max_gap``; shorter
   gaps are bridged by linear interpolation; tracks with too few detections or too small a
   face are dropped; centre and size are smoothed by a centred Gaussian inside the track
   (no lag, nothing leaks across a cut); ids are renumbered 0, 1, ... by first frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dubber.faces.detect import Detection, iou


@dataclass
class RawTrack:
    """Detections of one face, before cutting and smoothing."""

    frames: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def last_box(self) -> tuple[float, float, float, float]:
        return self.boxes[-1]


@dataclass
class TrackSegment:
    """A finished track: consecutive frames ``first .. last`` of one shot.

    Attributes:
        first, last: inclusive frame range.
        boxes: shape = (last - first + 1, 4), float64, smoothed full-res (x0, y0, x1, y1).
        scores: shape = (n,), float64; detector score, 0 on bridged frames.
        source: index of the :class:`RawTrack` it was cut from.
    """

    first: int
    last: int
    boxes: np.ndarray
    scores: np.ndarray
    source: int = -1


class Tracker:
    """Online association of per-frame detections (see the module docstring)."""

    def __init__(self, match_iou: float = 0.3, max_gap: int = 12) -> None:
        self.match_iou = match_iou
        self.max_gap = max_gap
        self.tracks: list[RawTrack] = []
        self._live: list[int] = []  # indices of tracks that may still be continued

    def live_boxes(self, frame_index: int) -> list[tuple[float, float, float, float]]:
        """Last boxes of the tracks seen in the frame before ``frame_index``."""
        return [self.tracks[k].last_box for k in self._live
                if self.tracks[k].frames[-1] == frame_index - 1]

    def seen_at(self, frame_index: int) -> list[int]:
        """Indices (into :attr:`tracks`) of the tracks detected on ``frame_index``."""
        return [k for k in self._live if self.tracks[k].frames[-1] == frame_index]

    @property
    def live(self) -> list[int]:
        """Indices of the tracks still open (seen within the last ``max_gap`` frames)."""
        return list(self._live)

    def update(self, frame_index: int, dets: list[Detection]) -> None:
        """Add one frame's detections (full-resolution boxes)."""
        self._live = [k for k in self._live
                      if frame_index - self.tracks[k].frames[-1] <= self.max_gap + 1]
        live = [self.tracks[k] for k in self._live]
        unmatched = list(range(len(dets)))
        if live and dets:
            tb = np.array([t.last_box for t in live])
            db = np.array([d.box for d in dets])
            ov = iou(tb, db)
            tc = (tb[:, :2] + tb[:, 2:]) / 2
            dc = (db[:, :2] + db[:, 2:]) / 2
            size = np.sqrt(np.prod(tb[:, 2:] - tb[:, :2], axis=1))
            dist = np.linalg.norm(tc[:, None] - dc[None], axis=2) / np.maximum(size[:, None], 1)
            score = np.where((ov >= self.match_iou) | (dist < 0.5), ov + (1 - np.minimum(dist, 1)), -1)
            while True:
                ti, di = np.unravel_index(np.argmax(score), score.shape)
                if score[ti, di] < 0:
                    break
                t = live[ti]
                t.frames.append(frame_index)
                t.boxes.append(dets[di].box)
                t.scores.append(dets[di].score)
                score[ti, :] = -1
                score[:, di] = -1
                unmatched.remove(di)
        for di in unmatched:
            self._live.append(len(self.tracks))
            self.tracks.append(RawTrack([frame_index], [dets[di].box], [dets[di].score]))


def finalize_tracks(
    raw: list[RawTrack],
    shots: list[tuple[int, int]],
    frame_size: tuple[int, int],
    max_gap: int = 12,
    min_track_frames: int = 10,
    min_face_size: float = 0.04,
    smooth_center: float = 2.0,
    smooth_size: float = 4.0,
) -> list[TrackSegment]:
    """Cut, bridge, filter and smooth raw tracks (see the module docstring).

    Args:
        raw: the tracker's tracks.
        shots: inclusive (first, last) frame ranges, in order, covering the clip.
        frame_size: (width, height) full-resolution coded pixels.

    Returns:
        Segments sorted by first frame, then by horizontal position.
    """
    shot_starts = np.array([s for s, _ in shots])
    min_side = min_face_size * min(frame_size)
    out: list[TrackSegment] = []
    for k, t in enumerate(raw):
        frames = np.asarray(t.frames)
        boxes = np.asarray(t.boxes, np.float64)
        scores = np.asarray(t.scores, np.float64)
        shot_of = np.searchsorted(shot_starts, frames, side="right") - 1
        breaks = np.flatnonzero((np.diff(shot_of) != 0) | (np.diff(frames) > max_gap + 1)) + 1
        for idx in np.split(np.arange(len(frames)), breaks):
            if len(idx) < min_track_frames:
                continue
            f, b, s = frames[idx], boxes[idx], scores[idx]
            sizes = np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1))
            if np.median(sizes) < min_side:
                continue
            seg = _bridge_and_smooth(f, b, s, smooth_center, smooth_size)
            out.append(TrackSegment(seg.first, seg.last, seg.boxes, seg.scores, k))
    out.sort(key=lambda seg: (seg.first, seg.boxes[0, 0]))
    return out


def _bridge_and_smooth(
    frames: np.ndarray, boxes: np.ndarray, scores: np.ndarray, sc: float, ss: float
) -> TrackSegment:
    first, last = int(frames[0]), int(frames[-1])
    all_f = np.arange(first, last + 1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    c = np.stack([np.interp(all_f, frames, centre[:, k]) for k in range(2)], axis=1)
    wh = np.stack([np.interp(all_f, frames, size[:, k]) for k in range(2)], axis=1)
    c, wh = smooth(c, sc), smooth(wh, ss)
    full_scores = np.zeros(len(all_f))
    full_scores[frames - first] = scores
    return TrackSegment(first, last, np.concatenate([c - wh / 2, c + wh / 2], axis=1), full_scores)


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Centred Gaussian smoothing along axis 0 that keeps a steady motion exact at the ends.

    The series is extended past each end by point reflection (``2 * x[0] - x[k]``), so a
    face moving at constant speed up to a cut is neither held back nor pushed: no lag at
    shot boundaries, unlike edge-repeating or mirroring.

    Args:
        x: shape = (n, k), float64.
        sigma: in frames; 0 returns ``x``.
    """
    n = len(x)
    if sigma <= 0 or n < 2:
        return x
    pad = min(n - 1, int(4 * sigma + 0.5))
    head = 2 * x[0] - x[1: pad + 1][::-1]
    tail = 2 * x[-1] - x[-pad - 1: -1][::-1]
    ext = np.concatenate([head, x, tail])
    return gaussian_filter1d(ext, sigma, axis=0, mode="nearest")[pad: pad + n]
