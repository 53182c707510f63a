"""Augmentation of the sync model's training runs, and re-timing of a video's sound.

Lips: a random per-run linear distortion of the mouth's movement (wider / taller, slight
rotation, larger or smaller), a random error in the neutral mouth, mesh-like jitter.
Speech: a random spectral tilt, a vocal-tract-like stretch of the mel axis, background
noise, masked mel bands. Both together: speed perturbation (:func:`stretched_lips`,
:func:`stretched_mel`: the run played faster or slower, picture and sound resampled about
the same instant). :func:`shift_mel` advances or delays a whole soundtrack.
"""

from __future__ import annotations

import math

import numpy as np

from dubber.sync.features import MEL_PER_FRAME, N_MOVING

SILENCE = -5.0  # log10 mel of silence (dubber.media.audio.SILENCE_LOG_MEL)


def augment_lips(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x: shape (L, D) displacements of one run -> distorted copy."""
    pts = x.reshape(len(x), N_MOVING, 2)
    sx, sy = np.exp(rng.uniform(-0.35, 0.35, 2))
    amp = np.exp(rng.uniform(-0.4, 0.4))
    th = rng.uniform(-0.15, 0.15)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    m = amp * rot @ np.diag([sx, sy])
    pts = pts @ m.T
    pts = pts + rng.normal(0, 0.01, (1, N_MOVING, 2))  # neutral-mouth error
    pts = pts + rng.normal(0, 0.004, pts.shape)  # mesh jitter
    return pts.reshape(len(x), -1).astype(np.float32)


def augment_mel(m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """m: shape (n_mels, steps) log10 mel of one run -> augmented copy."""
    n_mels = m.shape[0]
    bins = np.arange(n_mels, dtype=np.float64)
    warp = np.exp(rng.uniform(-0.12, 0.12))
    src = np.clip(bins / warp, 0, n_mels - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_mels - 1)
    f = (src - lo)[:, None]
    m = (1 - f) * m[lo] + f * m[hi]
    m = m + rng.uniform(-0.6, 0.6) * np.linspace(-1, 1, n_mels)[:, None]  # tilt
    if rng.random() < 0.5:  # background noise, 10 .. 40 dB below the run's loud level
        level = np.percentile(m, 95) - rng.uniform(1.0, 4.0)
        shape = rng.normal(0, 0.3, (n_mels, 1))
        noise = level + shape + rng.normal(0, 0.2, m.shape)
        m = np.log10(10.0 ** m + 10.0 ** noise)
    for _ in range(rng.integers(0, 3)):  # masked bands
        w = rng.integers(1, 8)
        a = rng.integers(0, n_mels - w)
        m[a: a + w] = m[a: a + w].mean()
    return m.astype(np.float32)


def stretched_lips(s, k: int, n: int, half: int, rate: float):
    """``n`` lip frames from ``k - half`` of ``s`` played ``rate`` times as fast (time
    stretched about frame ``k``, linear interpolation); None when that needs frames
    outside the sequence or unreadable ones."""
    if rate == 1.0:
        return s.feats[k - half: k - half + n]
    src = k + (np.arange(n) - half) * rate
    lo = np.floor(src).astype(int)
    if lo[0] < 0 or lo[-1] + 1 >= len(s) or not s.readable[lo[0]: lo[-1] + 2].all():
        return None
    w = (src - lo)[:, None].astype(np.float32)
    return (1 - w) * s.feats[lo] + w * s.feats[lo + 1]


def stretched_mel(mel: np.ndarray, c0: int, n: int, anchor: int, rate: float) -> np.ndarray:
    """Mel columns ``c0 .. c0 + n - 1`` of a timeline played ``rate`` times as fast about
    column ``anchor`` (silence outside the track)."""
    if rate == 1.0:
        out = np.full((mel.shape[0], n), SILENCE, np.float32)
        a, b = max(c0, 0), min(c0 + n, mel.shape[1])
        if b > a:
            out[:, a - c0: b - c0] = mel[:, a:b]
        return out
    src = anchor + (c0 + np.arange(n) - anchor) * rate
    lo = np.floor(src).astype(int)
    w = (src - lo).astype(np.float32)
    pad = np.full((mel.shape[0], 1), SILENCE, np.float32)

    def col(i):
        inside = (i >= 0) & (i < mel.shape[1])
        return np.where(inside, mel[:, np.clip(i, 0, mel.shape[1] - 1)], pad)

    return ((1 - w) * col(lo) + w * col(lo + 1)).astype(np.float32)


def shift_mel(mel: np.ndarray, frames: int) -> np.ndarray:
    """``mel`` with its sound advanced by ``frames`` grid frames (delayed when negative),
    silence filled in: a video whose sound lags its lips by ``frames`` is then in sync."""
    c = MEL_PER_FRAME * frames
    out = np.full_like(mel, SILENCE)
    if c >= 0:
        out[:, : mel.shape[1] - c] = mel[:, c:]
    else:
        out[:, -c:] = mel[:, : mel.shape[1] + c]
    return out
