"""Active-speaker selection: whose lips move with the original audio's speech.

For each shot, sliding windows of ``speaker_window`` seconds (moved by a quarter window; a
shorter shot is one window) are scored per track: the Pearson correlation between the
track's lip aperture and the speech envelope of the original audio, at the best lag within
``speaker_max_lag`` (lips open slightly before the sound). A window with too little speech
energy, or a track whose lips do not open visibly (``MIN_APERTURE_RANGE``), scores 0. A
frame's score is the mean of the windows covering it, each weighted by a triangle peaking
at its centre; it is 0 where the track's lips do not open and close within a second
around the frame (:func:`lips_active`). On each frame the best-scoring track speaks if its
score reaches ``speaker_min_corr``; runs shorter than ``min_speaking`` are merged into
their neighbours, except that a frame is never given to a track that scored 0 on it. A
face whose lips do not follow the speech is therefore never selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d
from scipy.signal import butter, sosfiltfilt

# Speech band of the envelope, Hz.
SPEECH_BAND = (300.0, 3400.0)
# Envelope window around each frame's timestamp, seconds.
ENVELOPE_WINDOW = 0.04
# The envelope is computed over blocks of this many seconds of audio (bounded memory).
ENVELOPE_BLOCK = 60
# Lips that speak open visibly: the aperture's 10th-to-90th percentile range inside a
# window must reach this (fraction of the eye distance). Measured on the test clips:
# talking faces 0.06 to 0.25, a closed mouth 0.00, a dancer's closed mouth seen small and
# moving to music 0.06 (whose lips nonetheless correlate with the music at r = 0.3-0.5).
MIN_APERTURE_RANGE = 0.065
# Frame by frame, lips count as still inside any stretch of ``min_speaking`` seconds or
# more over which the (smoothed) aperture stays within a band this wide (a shut mouth
# varies by < 0.01; a talking one that barely opens still moves by > 0.03 in a second).
MIN_LOCAL_RANGE = 0.03
# Both signals are smoothed by a Gaussian of this many frames before correlating: lips
# move slower than the 40 ms envelope, and the mesh jitters frame to frame.
SMOOTH_FRAMES = 1.0
# A window needs this fraction of its frames above the speech floor to have a speaker.
MIN_SPEECH_FRACTION = 0.2
# A track must cover this fraction of a window to be scored in it.
MIN_WINDOW_COVER = 0.6
# Overlapping windows per frame (windows move by 1 / this of their length).
WINDOWS_PER_FRAME = 4


@dataclass(frozen=True)
class SpeakerSettings:
    """The ``faces.speaker_*`` settings, in frames where they are times."""

    window: int
    max_lag: int
    min_corr: float
    floor_db: float
    min_run: int


def speech_envelope(audio, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """Speech-band loudness around each frame's timestamp, in bounded memory.

    Args:
        audio: shape = (S,) float32 mono in [-1, 1], or anything with
            ``samples(start, stop) -> np.ndarray`` (zeros outside the track), such as the
            disk-backed :class:`dubber.media.audio.AudioTrack` a film's soundtrack needs.
        sample_rate: Hz.
        times: shape = (N,), float64, frame presentation times in seconds, increasing.

    Returns:
        shape = (N,), float64, dB relative to full scale (-120 dB where there is no sound).
    """
    if isinstance(audio, np.ndarray):
        data = audio

        def read(a: int, b: int) -> np.ndarray:
            out = np.zeros(max(b - a, 0), np.float32)
            lo, hi = max(a, 0), min(b, len(data))
            if hi > lo:
                out[lo - a: hi - a] = data[lo:hi]
            return out
    else:
        read = audio.samples
    nyq = sample_rate / 2
    sos = butter(4, [SPEECH_BAND[0] / nyq, min(SPEECH_BAND[1] / nyq, 0.99)], btype="band",
                 output="sos")
    half = int(ENVELOPE_WINDOW * sample_rate / 2)
    pad = sample_rate // 2  # filter settling on both sides of a block
    centre = np.round(np.asarray(times) * sample_rate).astype(np.int64)
    out = np.empty(len(centre))
    step = ENVELOPE_BLOCK * sample_rate
    k = 0
    while k < len(centre):
        m = k + int(np.searchsorted(centre[k:], centre[k] + step))
        m = max(m, k + 1)
        a0, b0 = int(centre[k]) - half - pad, int(centre[m - 1]) + half + pad
        x = sosfiltfilt(sos, read(a0, b0).astype(np.float64))
        power = np.concatenate([[0.0], np.cumsum(x * x)])
        a, b = centre[k:m] - half - a0, centre[k:m] + half - a0
        mean = (power[b] - power[a]) / (b - a)
        out[k:m] = np.where(mean > 1e-12, 10 * np.log10(mean + 1e-12), -120.0)
        k = m
    return out


def best_lag_corr(a: np.ndarray, e: np.ndarray, max_lag: int) -> float:
    """Highest Pearson r of ``a`` against ``e`` shifted by -max_lag .. max_lag samples."""
    best = -1.0
    n = len(a)
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, lag): n + min(0, lag)]
        y = e[max(0, -lag): n - max(0, lag)]
        if len(x) < 8 or x.std() < 1e-9 or y.std() < 1e-9:
            continue
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


def window_starts(start: int, end: int, window: int,
                  per_window: int = WINDOWS_PER_FRAME) -> list[tuple[int, int]]:
    """Inclusive (first, last) windows of ``window`` frames covering ``start .. end``,
    moved by ``window / per_window``; the last one ends at ``end``."""
    n = end - start + 1
    if n <= window:
        return [(start, end)]
    hop = max(1, window // per_window)
    firsts = list(range(start, end - window + 2, hop))
    if firsts[-1] + window - 1 < end:
        firsts.append(end - window + 1)
    return [(f, f + window - 1) for f in firsts]


def score_shot(
    start: int,
    end: int,
    apertures: dict[int, tuple[int, np.ndarray]],
    envelope: np.ndarray,
    s: SpeakerSettings,
) -> dict[int, np.ndarray]:
    """Per-frame speaking scores of the tracks of one shot.

    Args:
        start, end: the shot's inclusive frame range.
        apertures: track id -> (first frame, aperture per frame, NaN where unknown).
        envelope: shape = (frame_count,), dB, the whole clip's speech envelope.
        s: settings in frames.

    Returns:
        track id -> shape = (end - start + 1,) float64 scores (0 where not scored).
    """
    n = end - start + 1
    env = envelope[start: end + 1]
    loud = env.max() if len(env) else -120.0
    env_smooth = gaussian_filter1d(np.maximum(env, loud - s.floor_db), SMOOTH_FRAMES)
    sums = {tid: np.zeros(n) for tid in apertures}
    weights = np.zeros(n)
    for w0, w1 in window_starts(start, end, s.window):
        sl = slice(w0 - start, w1 - start + 1)
        tri = _triangle(w1 - w0 + 1)
        weights[sl] += tri
        if np.mean(env[sl] > loud - s.floor_db) < MIN_SPEECH_FRACTION or loud < -70:
            continue
        e = env_smooth[sl]
        for tid, (first, ap) in apertures.items():
            idx = np.arange(w0, w1 + 1) - first
            inside = (idx >= 0) & (idx < len(ap))
            if inside.mean() < MIN_WINDOW_COVER:
                continue
            a = np.full(len(idx), np.nan)
            a[inside] = ap[idx[inside]]
            ok = ~np.isnan(a)
            if ok.mean() < MIN_WINDOW_COVER:
                continue
            p10, p90 = np.nanpercentile(a, [10, 90])
            if p90 - p10 < MIN_APERTURE_RANGE:
                continue
            a = gaussian_filter1d(np.interp(np.arange(len(a)), np.flatnonzero(ok), a[ok]),
                                  SMOOTH_FRAMES)
            r = best_lag_corr(a, e, s.max_lag)
            sums[tid][sl] += max(r, 0.0) * tri
    out = {}
    for tid, v in sums.items():
        first, ap = apertures[tid]
        out[tid] = v / np.maximum(weights, 1e-9) * lips_active(ap, first, start, end, s.min_run)
    return out


def _triangle(n: int) -> np.ndarray:
    """Weights peaking at a window's centre (as demucs blends overlapping chunks): a frame
    takes most from the windows centred near it, so scores change where speakers do."""
    t = np.arange(n) + 0.5
    return np.minimum(t, n - t) / (n / 2)


def lips_active(aperture: np.ndarray, first: int, start: int, end: int, span: int) -> np.ndarray:
    """Per frame of ``start .. end``: are the track's lips moving there? False inside any
    stretch of at least ``span`` frames over which the (smoothed) aperture stays within a
    band of ``MIN_LOCAL_RANGE`` -- shut, or held still -- and outside the track.

    A window's score spreads over all of its frames; this keeps a face whose mouth stays
    still for a second or more from being selected there even when the rest of its window
    correlated with the speech.
    """
    n = end - start + 1
    active = np.zeros(n, bool)
    ok = ~np.isnan(aperture)
    if ok.sum() < 2:
        return active
    a = gaussian_filter1d(np.interp(np.arange(len(aperture)), np.flatnonzero(ok), aperture[ok]),
                          SMOOTH_FRAMES)
    size = max(1, span)
    rng = maximum_filter1d(a, size, mode="nearest") - minimum_filter1d(a, size, mode="nearest")
    # the first and last half spans see only half a span of lips (the rest is padding): they
    # take the range of the nearest whole span, so a track's first half second is not
    # called still for lack of frames
    lo_c, hi_c = size // 2, len(a) - 1 - (size - 1 - size // 2)
    if lo_c <= hi_c:
        rng[:lo_c] = rng[lo_c]
        rng[hi_c + 1:] = rng[hi_c]
    # a frame whose surrounding span is still marks that whole span still
    still = maximum_filter1d((rng < MIN_LOCAL_RANGE).astype(np.uint8), size, mode="constant") > 0
    lo, hi = max(start, first), min(end, first + len(a) - 1)
    if lo <= hi:
        active[lo - start: hi - start + 1] = ~still[lo - first: hi - first + 1]
    return active


def speaking_runs(
    start: int, scores: dict[int, np.ndarray], min_corr: float, min_run: int
) -> list[tuple[int, int, int]]:
    """Who speaks when: (first, last, track) runs from per-frame scores.

    The best-scoring track above ``min_corr`` speaks on each frame (else nobody); runs
    shorter than ``min_run`` frames are merged into their longer neighbour, or the other
    one when the longer one's track scored 0 on some of its frames (a shut mouth is never
    handed speech), and are kept when neither can take them; runs of a track still shorter
    than ``min_run`` go.
    """
    if not scores:
        return []
    ids = list(scores)
    mat = np.stack([scores[i] for i in ids])
    best = mat.argmax(axis=0)
    label = np.where(mat.max(axis=0) >= min_corr, np.array(ids)[best], -1)
    row_of = {tid: r for r, tid in enumerate(ids)}

    def takes(run, a, b):  # can this neighbour run's track take frames a..b?
        return run[2] < 0 or bool((mat[row_of[run[2]], a: b + 1] > 0).all())

    runs = _runs(label)
    kept: set[tuple[int, int]] = set()
    while len(runs) > 1:
        lengths = [b - a + 1 if (a, b) not in kept else min_run for a, b, _ in runs]
        k = int(np.argmin(lengths))
        if lengths[k] >= min_run:
            break
        a, b, _ = runs[k]
        near = [j for j in (k - 1, k + 1) if 0 <= j < len(runs)]
        near.sort(key=lambda j: -(runs[j][1] - runs[j][0]))
        near = [j for j in near if takes(runs[j], a, b)]
        if not near:
            kept.add((a, b))
            continue
        label[a: b + 1] = runs[near[0]][2]
        runs = _runs(label)
        kept = {r[:2] for r in runs if r[:2] in kept}
    # merging never hands a track frames where its lips were still (score 0)
    for row, tid in enumerate(ids):
        label[(label == tid) & (mat[row] <= 0)] = -1
    runs = _runs(label)
    return [(start + a, start + b, int(v)) for a, b, v in runs
            if v >= 0 and (b - a + 1 >= min_run or (a, b) in kept)]


def _runs(label: np.ndarray) -> list[tuple[int, int, int]]:
    edges = np.flatnonzero(np.diff(label) != 0) + 1
    bounds = np.concatenate([[0], edges, [len(label)]])
    return [(int(a), int(b) - 1, int(label[a])) for a, b in zip(bounds[:-1], bounds[1:])]
