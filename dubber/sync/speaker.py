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
The per-frame choice and the merging of short runs are :func:`dubber.faces.speaker.speaking_runs`.
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


@functools.lru_cache(maxsize=4)
def _load(name: str, dims, weights_dir: str):
    from dubber.models.registry import load_model

    return load_model("lip_sync", name, dims, Path(weights_dir))


def load_sync_model(cfg=None, weights_dir=None):
    """The shipped sync model (loaded once per process), checked like every weight.

    Args:
        cfg: a :class:`~dubber.config.Config` (``models.lip_sync`` dims and
            ``models.weights.lip_sync`` name); None = the defaults.
        weights_dir: ``--weights`` folder (default ``$DUBBER_WEIGHTS``, else ``weights/``).
    """
    from dubber.config import ModelsConfig
    from dubber.models.registry import resolve_weights_dir

    m = cfg.models if cfg is not None else ModelsConfig()
    wdir = resolve_weights_dir(weights_dir)
    # a folder without the sync model (an older weights folder) falls back to the repository's
    from dubber.models.registry import REPO_WEIGHTS_DIR, read_manifest

    try:
        entry = read_manifest(wdir).get(m.weights.lip_sync)
        if entry is None or not (wdir / entry.file).is_file():
            wdir = REPO_WEIGHTS_DIR
    except Exception:  # noqa: BLE001 - load_model below reports the real problem
        wdir = REPO_WEIGHTS_DIR
    return _load(m.weights.lip_sync, m.lip_sync, str(wdir))


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
        out = np.where(valid, out, np.where(edge & (np.abs(near - np.arange(n)) <= 7),
                                            out[near], 0.0))
    return out


def frame_scores(curves: SyncCurves, times: np.ndarray, span: int) -> np.ndarray:
    """:func:`grid_scores` at the video frames shown at ``times`` (seconds), nearest
    grid frame; 0 outside the sequence."""
    g = grid_scores(curves, span)
    k = np.round(np.asarray(times) * RATE).astype(np.int64) - curves.start
    inside = (k >= 0) & (k < len(g))
    out = np.zeros(len(k))
    out[inside] = g[k[inside]]
    return out
