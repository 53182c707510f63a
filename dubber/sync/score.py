"""Sync scores: distances over audio offsets, per window and over spans of windows.

For a track's :class:`~dubber.sync.features.LipSequence` and a soundtrack, every readable
grid frame ``k`` (the centre of a ``frames``-long lip window) is compared with the speech
windows centred on ``k + o`` for every offset ``o`` in ``-max_offset .. max_offset``
(:data:`MAX_OFFSET` = 15 frames at 25 fps, +-600 ms). ``o > 0`` means the speech that
matches the lips comes ``o`` frames later: the audio lags the picture.

As SyncNet's evaluation (joonson/syncnet_python): over a span of windows, the distances
are averaged per offset; the **offset** is the one with the smallest mean distance, the
**distance** (LSE-D) that minimum, the **confidence** (LSE-C) the median over offsets minus
the minimum. A window or span in sync has a clear minimum at offset ~0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.sync.features import MEL_PER_FRAME, RATE, LipSequence, mel_span

MAX_OFFSET = 15  # grid frames either side
# Speech detection on the mel: a grid frame speaks when its mel power is within
# SPEECH_RANGE_DB of the clip's loud level (95th percentile) and above SPEECH_FLOOR_DB
# (dB of summed mel power; digital silence is -31, speech at normal level 0 to +20).
SPEECH_RANGE_DB = 30.0
SPEECH_FLOOR_DB = -15.0
BATCH = 2048  # windows per forward pass


@dataclass(frozen=True)
class OffsetScore:
    """The sync of one span of windows.

    Attributes:
        offset: grid frames (25 fps) the audio lags the lips by (negative: leads).
        confidence: median minus minimum of the mean distance over offsets (LSE-C style).
        distance: the minimum mean distance (LSE-D style), 0 .. 2.
        windows: how many windows were averaged.
        sharpness: how far the minimum stands out of the curve: confidence over the
            curve's spread (1.4826 x its median absolute deviation over offsets). A curve
            of noise, as a few dozen windows of unrelated speech give, scores ~1-1.5 however
            deep its minimum; lips in sync 2 and up.
    """

    offset: int
    confidence: float
    distance: float
    windows: int
    sharpness: float = 0.0

    @property
    def offset_ms(self) -> float:
        return 1000.0 * self.offset / RATE


@dataclass(frozen=True)
class SyncCurves:
    """Distances of one track's windows over offsets.

    Attributes:
        start: grid index of row 0.
        dist: shape = (K, 2 * max_offset + 1), float32; NaN where the lip window is not
            fully readable.
        speech: shape = (K,), bool: the audio speaks at this grid frame.
    """

    start: int
    dist: np.ndarray
    speech: np.ndarray

    @property
    def max_offset(self) -> int:
        return (self.dist.shape[1] - 1) // 2

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.dist[:, 0])


def speech_frames(mel: np.ndarray, loud_db: float | None = None) -> np.ndarray:
    """Per grid frame, whether the audio speaks.

    Args:
        mel: shape = (N_MELS, 4 * K) log10 mel, column ``4k`` = grid frame ``k``.
        loud_db: the clip's loud level (default: this mel's 95th percentile).

    Returns:
        shape = (K,), bool.
    """
    e = 10 * np.log10(np.maximum((10.0 ** mel.astype(np.float64)).sum(0), 1e-12))
    k = len(e) // MEL_PER_FRAME
    e = e[: k * MEL_PER_FRAME].reshape(k, MEL_PER_FRAME).mean(1)
    loud = float(np.percentile(e, 95)) if loud_db is None and len(e) else (loud_db or 0.0)
    return (e > loud - SPEECH_RANGE_DB) & (e > SPEECH_FLOOR_DB)


def loud_level(audio, rate: int = 16000) -> float:
    """The 95th percentile of the speech-detection power (dB) over a whole track."""
    n = len(audio) if not hasattr(audio, "n_samples") else audio.n_samples
    steps = n // 160 + 1
    vals = []
    for a in range(0, steps, 60000):  # 10 min blocks
        mel = mel_span(audio, a, min(60000, steps - a)).numpy()
        vals.append(10 * np.log10(np.maximum((10.0 ** mel.astype(np.float64)).sum(0), 1e-12)))
    e = np.concatenate(vals) if vals else np.zeros(1)
    return float(np.percentile(e, 95))


def lip_windows(seq: LipSequence, frames: int):
    """Lip windows centred on every grid frame of ``seq``.

    Returns:
        (windows, ok): torch shape = (K, frames, D) (zeros beyond the sequence), and
        shape = (K,) bool: all ``frames`` frames readable.
    """
    import torch

    half = frames // 2
    feats = np.pad(seq.feats, ((half, half), (0, 0)))
    readable = np.pad(seq.readable, (half, half))
    idx = np.arange(len(seq))[:, None] + np.arange(frames)
    ok = readable[idx].all(1)
    return torch.from_numpy(feats[idx]), ok


def speech_windows(mel, frames: int):
    """All speech windows of a mel span: window ``j`` covers columns
    ``4j .. 4j + 4 * frames - 1``.

    Args:
        mel: torch shape = (N_MELS, M).

    Returns:
        torch shape = (W, N_MELS, 4 * frames), W = (M - 4 * frames) // 4 + 1.
    """
    return mel.unfold(1, MEL_PER_FRAME * frames, MEL_PER_FRAME).permute(1, 0, 2)


def track_curves(model, seq: LipSequence, audio, max_offset: int = MAX_OFFSET,
                 loud_db: float | None = None) -> SyncCurves:
    """Distances of every lip window of ``seq`` against the audio at every offset.

    Args:
        model: a :class:`~dubber.sync.model.LipSyncNet` (eval mode).
        seq: the track's lips on the grid (grid frame 0 = the video's first frame).
        audio: 16 kHz mono array, or anything with ``samples(start, stop)``.
        max_offset: offsets searched, grid frames either side.
        loud_db: the whole track's loud level for speech detection (default: this span's).
    """
    import torch

    T = model.dims.frames
    K = len(seq)
    first_frame = seq.start - max_offset  # grid frame of speech window 0
    n_win = K + 2 * max_offset
    first_col = MEL_PER_FRAME * first_frame - MEL_PER_FRAME * T // 2
    mel = mel_span(audio, first_col, MEL_PER_FRAME * (n_win - 1) + MEL_PER_FRAME * T)
    centre = mel[:, MEL_PER_FRAME * T // 2:][:, : MEL_PER_FRAME * n_win]
    speech = speech_frames(centre.numpy(), loud_db)[max_offset: max_offset + K]
    lips, ok = lip_windows(seq, T)
    dist = np.full((K, 2 * max_offset + 1), np.nan, np.float32)
    if not ok.any():
        return SyncCurves(seq.start, dist, speech)
    with torch.no_grad():
        wins = speech_windows(mel, T)
        a = torch.cat([model.embed_speech(wins[i: i + BATCH]) for i in range(0, len(wins), BATCH)])
        rows = np.flatnonzero(ok)
        v = torch.cat([model.embed_lips(lips[rows[i: i + BATCH]])
                       for i in range(0, len(rows), BATCH)])
        # row k's offsets o = -max..max are speech windows k .. k + 2 * max
        idx = torch.from_numpy(rows)[:, None] + torch.arange(2 * max_offset + 1)
        d = (v[:, None, :] - a[idx]).norm(dim=-1)
    dist[rows] = d.numpy()
    return SyncCurves(seq.start, dist, speech)


def span_score(curves: SyncCurves, rows: np.ndarray | slice | None = None,
               speech_only: bool = True) -> OffsetScore | None:
    """Offset, confidence and distance over some rows of ``curves`` (default all); only
    readable windows, and with ``speech_only`` only those on speech. None when none."""
    d = curves.dist if rows is None else curves.dist[rows]
    keep = ~np.isnan(d[:, 0])
    if speech_only:
        sp = curves.speech if rows is None else curves.speech[rows]
        keep &= sp
    if not keep.any():
        return None
    mean = d[keep].mean(0)
    j = int(np.argmin(mean))
    return OffsetScore(j - curves.max_offset, float(np.median(mean) - mean[j]), float(mean[j]),
                       int(keep.sum()), sharpness(mean))


def sharpness(mean: np.ndarray) -> float:
    """(median - minimum) of a distance curve over its spread (1.4826 x the median
    absolute deviation over offsets). Measured (weights/README.md): 0.8-1.5 for other
    speech, 1.9 and up for lips in sync."""
    med = float(np.median(mean))
    spread = 1.4826 * float(np.median(np.abs(mean - med)))
    return (med - float(np.min(mean))) / max(spread, 1e-9)


def window_scores(curves: SyncCurves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: (offset, confidence, distance), NaN / 0 where not readable."""
    d = curves.dist
    ok = curves.valid
    off = np.zeros(len(d), np.int64)
    conf = np.full(len(d), np.nan)
    dmin = np.full(len(d), np.nan)
    if ok.any():
        j = np.argmin(d[ok], 1)
        off[ok] = j - curves.max_offset
        dmin[ok] = d[ok].min(1)
        conf[ok] = np.median(d[ok], 1) - dmin[ok]
    return off, conf, dmin


def sync_distance(model, lips, mel):
    """The differentiable sync loss for a generator: distance of aligned pairs.

    Args:
        lips: torch shape = (B, frames, 2 * points); mel: (B, n_mels, 4 * frames).

    Returns:
        torch shape = (B,), 0 .. 2 (lower = more in sync); gradients flow to both inputs.
    """
    return model.distance(lips, mel)
