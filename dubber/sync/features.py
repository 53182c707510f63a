"""What the sync model sees: normalised lip and jaw landmarks at 25 fps, and the mel.

Visual side, per track: the face-mesh points :data:`MESH_POINTS` (kept per frame by the
analysis pass) are (1) aligned frame by frame onto the track's own median face by a
similarity transform (Procrustes) fitted on :data:`STABLE` points (eye corners, nose
bridge), so head position, roll and scale go; distances are then in outer-eye-distance
units; (2) the track's median lip and jaw shape (its neutral mouth) is subtracted, so one
speaker's thick lips or wide mouth do not look like movement; (3) resampled from the
video's own presentation times to :data:`RATE` frames per second (linear interpolation),
so 23.976, 29.97, 30 and variable-rate video give the model the same timeline.

Audio side: the 80-bin log-mel of :mod:`dubber.media.audio` (100 steps/s, 4 steps per
25 fps frame); grid frame ``k`` (time ``k / RATE`` from the first video frame) is mel step
``MEL_PER_FRAME * k``.

A frame is *readable* when the mesh found the face and the face is not in strong
profile (:data:`MAX_PROFILE`): the far half of a profile's mesh is guessed, and a guessed
mouth must not be credited with someone else's speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.mouth.geometry import similarity

from dubber.faces.landmarks import LIP_INNER, LIP_OUTER
from dubber.media.audio import HOP_LENGTH, MEL_STEPS_PER_SECOND, N_FFT, _exact_div

RATE = 25  # grid frames per second the model works at
MEL_PER_FRAME = _exact_div(MEL_STEPS_PER_SECOND, RATE)  # 4 mel steps per grid frame

# Lower face contour, ear to ear under the chin (moves with the jaw).
JAW = (58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288)
# Points that move with the head but not the mouth: eye corners and the nose bridge.
STABLE = (33, 133, 362, 263, 168, 6, 197, 195)
# Face sides and nose tip: how far the head is turned.
_YAW = (234, 454, 1)
# The points the analysis keeps per frame, in this order (the model reads the first
# len(LIP_OUTER) + len(LIP_INNER) + len(JAW) of them).
MESH_POINTS = LIP_OUTER + LIP_INNER + JAW + STABLE + _YAW
N_MOVING = len(LIP_OUTER) + len(LIP_INNER) + len(JAW)  # 55 points the model sees
_STABLE_IDX = [MESH_POINTS.index(i) for i in STABLE]
_YAW_IDX = [MESH_POINTS.index(i) for i in _YAW]
_EYES_IDX = [MESH_POINTS.index(33), MESH_POINTS.index(263)]
# |nose-to-side asymmetry| above this is a strong profile: (dl - dr) / (dl + dr) of the nose
# tip's distances to the two face sides along the eye axis; 0 frontal, 1 full profile.
# Measured here: frontal faces 0.0-0.5, a 3/4 view 0.6-0.85, profile_turn_224 at its end 0.91+.
MAX_PROFILE = 0.9


@dataclass(frozen=True)
class LipSequence:
    """One track's lips on the 25 fps grid.

    Attributes:
        start: grid index of the first entry (time ``start / RATE`` s from frame 0).
        feats: shape = (K, 2 * N_MOVING), float32: aligned, neutral-subtracted points
            (x0, y0, x1, y1, ...), outer-eye-distance units; 0 where not readable.
        readable: shape = (K,), bool.
    """

    start: int
    feats: np.ndarray
    readable: np.ndarray

    def __len__(self) -> int:
        return len(self.readable)


# The measures the model reads off the moving points (all linear in the aligned,
# neutral-subtracted coordinates, y pointing down the face): a handful of mouth and jaw
# movements rather than 110 coordinates, so that a few training speakers cannot be
# learnt by heart. (name, [(point, axis, weight), ...])
MOUTH_MEASURES = (
    ("inner_opening", [(87, 1, 1), (82, 1, -1), (14, 1, 1), (13, 1, -1), (317, 1, 1),
                       (312, 1, -1)]),
    ("outer_opening", [(84, 1, 1), (37, 1, -1), (17, 1, 1), (0, 1, -1), (314, 1, 1),
                       (267, 1, -1)]),
    ("width", [(291, 0, 1), (61, 0, -1)]),
    ("upper_lip", [(0, 1, 1), (37, 1, 0.5), (267, 1, 0.5)]),
    ("lower_lip", [(17, 1, 1), (84, 1, 0.5), (314, 1, 0.5)]),
    ("corners", [(61, 1, 1), (291, 1, 1)]),
    ("jaw", [(152, 1, 1), (148, 1, 0.5), (377, 1, 0.5)]),
)


def measure_matrix() -> np.ndarray:
    """shape = (2 * N_MOVING, len(MOUTH_MEASURES)), float32: feature vector -> measures."""
    m = np.zeros((2 * N_MOVING, len(MOUTH_MEASURES)), np.float32)
    for j, (_, terms) in enumerate(MOUTH_MEASURES):
        for point, axis, w in terms:
            m[2 * MESH_POINTS.index(point) + axis, j] += w
    return m


def profile_ratio(points: np.ndarray) -> np.ndarray:
    """How far each face is turned: 0 frontal, towards 1 in profile.

    Args:
        points: shape = (..., len(MESH_POINTS), 2).

    Returns:
        shape = (...,), float64 in [0, 1] (NaN where ``points`` is NaN).
    """
    p = np.asarray(points, np.float64)
    axis = p[..., _EYES_IDX[1], :] - p[..., _EYES_IDX[0], :]
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    left, right, nose = (p[..., i, :] for i in _YAW_IDX)
    dl = np.abs(np.sum((nose - left) * axis, -1))
    dr = np.abs(np.sum((right - nose) * axis, -1))
    return np.abs(dl - dr) / np.maximum(dl + dr, 1e-9)


def normalise_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose-, scale- and neutral-normalised moving points of one track.

    Args:
        points: shape = (n, len(MESH_POINTS), 2), any pixel units, NaN where unknown.

    Returns:
        (feats, readable): shape = (n, 2 * N_MOVING) float32 (0 where not readable) and
        shape = (n,) bool.
    """
    pts = np.asarray(points, np.float64)
    n = len(pts)
    ok = ~np.isnan(pts).any(axis=(1, 2))
    ok[ok] = profile_ratio(pts[ok]) <= MAX_PROFILE
    feats = np.zeros((n, 2 * N_MOVING), np.float32)
    if not ok.any():
        return feats, ok
    # 1. a first, two-point normalisation of each frame (eye axis horizontal, unit eye
    #    distance) gives the template: the track's median stable shape
    canon = []
    for f in np.flatnonzero(ok):
        e0, e1 = pts[f, _EYES_IDX[0]], pts[f, _EYES_IDX[1]]
        v = e1 - e0
        d = max(np.hypot(*v), 1e-9)
        c, s = v / d
        rot = np.array([[c, s], [-s, c]]) / d
        canon.append((pts[f, _STABLE_IDX] - (e0 + e1) / 2) @ rot.T)
    template = np.median(np.stack(canon), axis=0)
    # 2. per frame, Procrustes onto the template; the moving points follow
    moving = np.zeros((n, N_MOVING, 2))
    for f in np.flatnonzero(ok):
        m = similarity(pts[f, _STABLE_IDX], template)
        scale, rot, t = 1.0, m[:, :2], m[:, 2]
        moving[f] = scale * pts[f, :N_MOVING] @ rot.T + t
    # 3. the speaker's neutral mouth
    moving[ok] -= np.median(moving[ok], axis=0)
    feats[ok] = moving[ok].reshape(int(ok.sum()), -1)
    return feats, ok


def to_grid(times: np.ndarray, feats: np.ndarray, readable: np.ndarray) -> LipSequence:
    """Resample per-video-frame features onto the :data:`RATE` grid.

    Args:
        times: shape = (n,), float64 presentation times (s from the video's first frame)
            of the track's frames, increasing.
        feats: shape = (n, D) float32; readable: shape = (n,) bool.

    Returns:
        the grid frames from the first to the last at or inside the track's time span; a
        grid frame is readable when both video frames around it are.
    """
    t = np.asarray(times, np.float64)
    k0 = int(np.ceil(t[0] * RATE - 1e-6))
    k1 = int(np.floor(t[-1] * RATE + 1e-6))
    if k1 < k0:
        return LipSequence(k0, np.zeros((0, feats.shape[1]), np.float32), np.zeros(0, bool))
    g = np.arange(k0, k1 + 1) / RATE
    j = np.clip(np.searchsorted(t, g, side="right") - 1, 0, len(t) - 1)
    j1 = np.minimum(j + 1, len(t) - 1)
    span = np.maximum(t[j1] - t[j], 1e-9)
    w = np.clip((g - t[j]) / span, 0.0, 1.0)
    w = np.where(j1 == j, 0.0, w)
    exact = np.abs(t[j] - g) < 1e-6
    ok = readable[j] & (readable[j1] | exact)
    out = (1 - w)[:, None] * feats[j] + w[:, None] * feats[j1]
    out[~ok] = 0
    return LipSequence(k0, out.astype(np.float32), ok)


def track_sequence(points: np.ndarray, times: np.ndarray) -> LipSequence:
    """:func:`normalise_points` then :func:`to_grid` for one track."""
    feats, ok = normalise_points(points)
    return to_grid(times, feats, ok)


def mel_span(audio, first: int, count: int):
    """Log-mel steps ``first .. first + count - 1`` of a 16 kHz track (silence outside it).

    Args:
        audio: shape = (S,) float32, or anything with ``samples(start, stop)``, or with
            ``mel_columns(first, count)`` (a precomputed mel).
        first: global mel step (step ``k`` is centred on sample ``k * HOP_LENGTH``).
        count: steps.

    Returns:
        torch.Tensor, shape = (N_MELS, count), float32.
    """
    from dubber.media.audio import log_mel, read_range

    if hasattr(audio, "mel_columns"):  # a precomputed mel (training, calibration)
        return audio.mel_columns(first, count)
    start = first * HOP_LENGTH - N_FFT // 2
    stop = (first + count - 1) * HOP_LENGTH + N_FFT // 2
    return log_mel(read_range(audio, start, stop), center=False)[:, :count]
