"""Who speaks: the face whose lips the sync model finds in sync with the ORIGINAL audio.

Per track, :func:`~dubber.sync.score.track_curves` gives every lip window's distance to
the audio over offsets. Within a shot, spans of ``speaker_window`` seconds (moved by a
quarter span) are scored per track: the mean distance curve of the span's readable
windows on speech, and the score is its median minus its minimum near offset 0
(:data:`NEAR_ZERO` frames): a confidence that the lips move with this audio *now*. A span
with too few readable speech windows (:data:`MIN_SPAN_COVER`) scores 0. A frame's score is
the triangle-weighted mean of the spans covering it (as :mod:`dubber.faces.speaker`
blends its windows), and 0 wherever the face is not readable (no mesh, strong profile: a
guessed mouth is never credited with someone else's speech) or the audio is silent. The
per-frame choice and the merging of short runs are :func:`dubber.faces.speaker.speaking_runs`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from dubber.faces.speaker import _triangle, window_starts
from dubber.sync.features import RATE, LipSequence, track_sequence
from dubber.sync.score import SyncCurves, loud_level, track_curves

log = logging.getLogger(__name__)

NEAR_ZERO = 1  # offsets (grid frames) that count as in sync for the ORIGINAL audio
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


def span_sync_score(curves: SyncCurves, rows: slice, min_cover: float = MIN_SPAN_COVER
                    ) -> float:
    """Confidence that the span's lips are in sync at offset ~0 (0 when unscored)."""
    d = curves.dist[rows]
    keep = ~np.isnan(d[:, 0]) & curves.speech[rows]
    if len(d) == 0 or keep.mean() < min_cover:
        return 0.0
    mean = d[keep].mean(0)
    m = curves.max_offset
    near = mean[m - NEAR_ZERO: m + NEAR_ZERO + 1].min()
    return float(max(np.median(mean) - near, 0.0))


def grid_scores(curves: SyncCurves, span: int) -> np.ndarray:
    """Per grid row of ``curves``: triangle-weighted mean of the span scores covering it,
    0 where the window is not readable or the audio silent. shape = (K,)."""
    n = len(curves.dist)
    if n == 0:
        return np.zeros(0)
    sums = np.zeros(n)
    weights = np.zeros(n)
    for a, b in window_starts(0, n - 1, span):
        tri = _triangle(b - a + 1)
        sums[a: b + 1] += span_sync_score(curves, slice(a, b + 1)) * tri
        weights[a: b + 1] += tri
    out = sums / np.maximum(weights, 1e-9)
    return out * (curves.valid & curves.speech)


def frame_scores(curves: SyncCurves, times: np.ndarray, span: int) -> np.ndarray:
    """:func:`grid_scores` at the video frames shown at ``times`` (seconds), nearest
    grid frame; 0 outside the sequence."""
    g = grid_scores(curves, span)
    k = np.round(np.asarray(times) * RATE).astype(np.int64) - curves.start
    inside = (k >= 0) & (k < len(g))
    out = np.zeros(len(k))
    out[inside] = g[k[inside]]
    return out
