"""Who speaks: the face whose lips the sync model finds in sync with the ORIGINAL audio.

Per track, :func:`~dubber.sync.score.track_curves` gives every lip window's distance to
the audio over offsets. The track's own offset is the best one over all its windows on
speech (a film's sound may sit a few frames off its picture, and then sits so for the whole
shot; a track lies inside one shot). Within the shot, spans of ``speaker_window`` seconds
(moved by a quarter span) are scored per track: the mean distance curve of the span's
readable windows on speech, and the score is its median minus its minimum within
:data:`NEAR_ZERO` frames of the track's offset: a confidence that the lips move with this
audio *now*. A span with too few readable speech windows (:data:`MIN_SPAN_COVER`)
scores 0. A frame's score is the triangle-weighted mean of the spans covering it (as
:mod:`dubber.faces.speaker` blends its windows), and 0 wherever the face is not readable
(no mesh, strong profile: a guessed mouth is never credited with someone else's speech).

Two rules over the span scores (applied per shot by :mod:`dubber.faces.analyze`): a track in
sync over its whole shot keeps the speaker role where its span score dips, wherever no
other face is more in sync and the audio speaks (:func:`shot_hold`, :func:`hold_speaker`:
a speaker whose 3 s spans are noisy is not dropped for half her frames); and of faces with
a score, one whose lips have been still for half a second does not speak while another
face's lips move (:func:`prefer_moving`: a span's score spreads over all its frames, so
without it a handover waits for the spans to pass). The per-frame choice and the merging
of short runs are :func:`dubber.faces.speaker.speaking_runs`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from dubber.faces.speaker import _triangle, window_starts
from dubber.sync.features import RATE, LipSequence, track_sequence
from dubber.sync.score import SyncCurves, loud_level, span_score, track_curves

log = logging.getLogger(__name__)

NEAR_ZERO = 1  # grid frames either side of the track's offset that count as in sync
MIN_SPAN_COVER = 0.3  # share of a span's frames that must be readable windows on speech
# Rows at each end of a track with no lip window of their own (half the model's 15 frames):
# they take the nearest readable row's score.
EDGE = 7
# Shot-level evidence (:func:`shot_hold`): a track whose lips are in sync over its whole
# shot (all its speech windows averaged: confidence at least SHOT_MIN_CONFIDENCE, at an
# offset within SHOT_MAX_OFFSET frames of 0, and a dip SHOT_MIN_SHARPNESS times the curve's
# spread) keeps the speaker role through spans whose own score dips, wherever no other face
# is more in sync and the audio speaks. Measured (weights/README.md): talking tracks 0.06-0.43
# at -2 .. +2 with sharpness 2.3-29; a dancer against music 0.03 at -7, a silent face 0.02.
SHOT_MIN_CONFIDENCE = 0.05
SHOT_MAX_OFFSET = 2
SHOT_MIN_SHARPNESS = 2.0


@functools.lru_cache(maxsize=4)
def _load(name: str, dims, weights_dir: str):
    from dubber.models.registry import load_model

    return load_model("lip_sync", name, dims, Path(weights_dir))


def sync_weights_folder(cfg=None, weights_dir=None) -> Path:
    """The folder the sync model loads from: ``weights_dir`` (default ``$DUBBER_WEIGHTS``,
    else ``weights/``), or the repository's when that folder has no sync model (an older
    weights folder)."""
    from dubber.config import ModelsConfig
    from dubber.models.registry import REPO_WEIGHTS_DIR, read_manifest, resolve_weights_dir

    m = cfg.models if cfg is not None else ModelsConfig()
    wdir = resolve_weights_dir(weights_dir)
    try:
        entry = read_manifest(wdir).get(m.weights.lip_sync)
        if entry is None or not (wdir / entry.file).is_file():
            return REPO_WEIGHTS_DIR
    except Exception:  # noqa: BLE001 - load_model reports the real problem
        return REPO_WEIGHTS_DIR
    return wdir


def load_sync_model(cfg=None, weights_dir=None):
    """The shipped sync model (loaded once per process), checked like every weight.

    Args:
        cfg: a :class:`~dubber.config.Config` (``models.lip_sync`` dims and
            ``models.weights.lip_sync`` name); None = the defaults.
        weights_dir: ``--weights`` folder (see :func:`sync_weights_folder`).
    """
    from dubber.config import ModelsConfig

    m = cfg.models if cfg is not None else ModelsConfig()
    return _load(m.weights.lip_sync, m.lip_sync, str(sync_weights_folder(cfg, weights_dir)))


def sequences(tracks, times: np.ndarray) -> dict[int, LipSequence]:
    """Lip sequences of the tracks that carry mesh points (``Track.lips``)."""
    out = {}
    for t in tracks:
        if t.lips is not None:
            out[t.id] = track_sequence(t.lips, times[t.first: t.last + 1])
    return out


def curves_of(model, seqs: dict[int, LipSequence], audio) -> dict[int, SyncCurves]:
    """Sync curves of every sequence against ``audio`` (speech relative to the whole
    track's loud level)."""
    loud = loud_level(audio) if seqs else 0.0
    return {tid: track_curves(model, s, audio, loud_db=loud) for tid, s in seqs.items()}


def span_sync_score(curves: SyncCurves, rows: slice, min_cover: float = MIN_SPAN_COVER,
                    offset: int = 0) -> float:
    """Confidence that the span's lips are in sync at ``offset`` +- NEAR_ZERO (0 when
    unscored)."""
    d = curves.dist[rows]
    keep = ~np.isnan(d[:, 0]) & curves.speech[rows]
    if len(d) == 0 or keep.mean() < min_cover:
        return 0.0
    mean = d[keep].mean(0)
    m = curves.max_offset + offset
    near = mean[max(m - NEAR_ZERO, 0): m + NEAR_ZERO + 1].min()
    return float(max(np.median(mean) - near, 0.0))


def grid_scores(curves: SyncCurves, span: int) -> np.ndarray:
    """Per grid row of ``curves``: triangle-weighted mean of the span scores (at the track's
    own offset) covering it; 0 where the lip window is not readable, except in the half
    window at each end of the track, which takes its neighbour's. shape = (K,)."""
    n = len(curves.dist)
    if n == 0:
        return np.zeros(0)
    whole = span_score(curves)
    offset = whole.offset if whole is not None else 0
    sums = np.zeros(n)
    weights = np.zeros(n)
    for a, b in window_starts(0, n - 1, span):
        tri = _triangle(b - a + 1)
        sums[a: b + 1] += span_sync_score(curves, slice(a, b + 1), offset=offset) * tri
        weights[a: b + 1] += tri
    out = sums / np.maximum(weights, 1e-9)
    # the first and last half window of a track have no window of their own: they take the
    # nearest readable row's score (a face is not dropped for its first 7 frames)
    valid = curves.valid
    if valid.any():
        rows = np.flatnonzero(valid)
        near = rows[np.clip(np.searchsorted(rows, np.arange(n)), 0, len(rows) - 1)]
        prev = rows[np.clip(np.searchsorted(rows, np.arange(n)) - 1, 0, len(rows) - 1)]
        near = np.where(np.abs(prev - np.arange(n)) < np.abs(near - np.arange(n)), prev, near)
        edge = (np.arange(n) < rows[0]) | (np.arange(n) > rows[-1])
        out = np.where(valid, out, np.where(edge & (np.abs(near - np.arange(n)) <= EDGE),
                                            out[near], 0.0))
    return out


def frame_scores(curves: SyncCurves, times: np.ndarray, span: int) -> np.ndarray:
    """:func:`grid_scores` at the video frames shown at ``times`` (seconds), nearest
    grid frame; 0 outside the sequence."""
    return _at_frames(grid_scores(curves, span), curves.start, times)


def _at_frames(grid: np.ndarray, start: int, times: np.ndarray) -> np.ndarray:
    """Per-grid-row values (row 0 = grid frame ``start``) at the video frames shown at
    ``times`` (seconds), nearest grid frame; 0 outside."""
    k = np.round(np.asarray(times) * RATE).astype(np.int64) - start
    inside = (k >= 0) & (k < len(grid))
    out = np.zeros(len(k))
    out[inside] = grid[k[inside]]
    return out


def shot_hold(curves: SyncCurves, span: int, min_sync: float) -> np.ndarray:
    """Per grid row of ``curves``: the score a track in sync over its whole shot keeps
    (``max(confidence, min_sync)``) on readable rows with speech within half a span, 0
    elsewhere and for a track that is not (see :data:`SHOT_MIN_CONFIDENCE`). shape = (K,)."""
    from scipy.ndimage import uniform_filter1d

    n = len(curves.dist)
    whole = span_score(curves)  # a track lies inside one shot
    if (whole is None or whole.confidence < SHOT_MIN_CONFIDENCE
            or abs(whole.offset) > SHOT_MAX_OFFSET or whole.sharpness < SHOT_MIN_SHARPNESS):
        return np.zeros(n)
    near = uniform_filter1d(curves.speech.astype(np.float64), max(1, span), mode="constant")
    rows = np.flatnonzero(curves.valid)
    # the half window at each end of the track has no lip window of its own (as in
    # grid_scores): it counts as readable when the nearest readable row is within reach
    readable = curves.valid.copy()
    readable[max(rows[0] - EDGE, 0): rows[0]] = True
    readable[rows[-1] + 1: rows[-1] + 1 + EDGE] = True
    held = max(whole.confidence, min_sync)
    return np.where(readable & (near >= MIN_SPAN_COVER), held, 0.0)


def frame_hold(curves: SyncCurves, times: np.ndarray, span: int, min_sync: float) -> np.ndarray:
    """:func:`shot_hold` at the video frames shown at ``times`` (nearest grid frame)."""
    return _at_frames(shot_hold(curves, span, min_sync), curves.start, times)


def hold_speaker(scores: dict[int, np.ndarray], holds: dict[int, np.ndarray]) -> dict:
    """Per frame, the face most in sync there (highest score; the held score breaks ties)
    gets at least its held score; the other faces keep theirs.

    Args:
        scores, holds: track id -> shape = (n,) per-frame scores of one shot.

    Returns:
        track id -> shape = (n,) float64.
    """
    if not scores:
        return {}
    ids = list(scores)
    mat = np.stack([scores[i] for i in ids])
    hold = np.stack([holds.get(i, np.zeros_like(scores[i])) for i in ids])
    best = np.argmax(mat + 1e-6 * hold, axis=0)
    cols = np.arange(mat.shape[1])
    mat = mat.copy()
    mat[best, cols] = np.maximum(mat[best, cols], hold[best, cols])
    return {i: mat[r] for r, i in enumerate(ids)}


def prefer_moving(scores: dict[int, np.ndarray], moving: dict[int, np.ndarray]) -> dict:
    """On frames where a face with a score has moving lips, faces whose lips are still
    there score 0: of two faces in sync over the last seconds, the one whose mouth is shut
    now is not the one speaking now (a span's score spreads over all its frames).

    Args:
        scores: track id -> shape = (n,) per-frame scores of one shot.
        moving: track id -> shape = (n,) bool, lips moving on the frame.
    """
    if len(scores) < 2:
        return scores
    ids = list(scores)
    mat = np.stack([scores[i] for i in ids])
    mov = np.stack([moving[i] for i in ids])
    someone = ((mat > 0) & mov).any(axis=0)
    mat = np.where(someone[None, :] & ~mov, 0.0, mat)
    return {i: mat[r] for r, i in enumerate(ids)}
