"""The regressor's inputs: speaker- and language-independent features per 10 ms step,
with their temporal context, read at any frame's own presentation time.

Per step: the posterior of each of PocketSphinx's 42 base phones
(:mod:`dubber.mouth.posteriors`: every phone's share, not the recogniser's one best
guess; it replaced the recognised phone's one-hot on 2026-11-30, leave-one-video-out
opening r 0.351 -> 0.442 with the voice's warp), the per-voice normalised acoustics
(loudness, voice activity, F1, F2, voicing, pitch, the loudness's rise), and the viseme the
timing rules show (one-hot over :data:`~dubber.mouth.track.VISEMES`: it carries the rules'
coarticulation, closures and anticipation; on the corpus it adds about 0.02 to the
opening's r, held-out and cross-validated alike), and the second layer of Whisper tiny.en's
encoder (:mod:`dubber.mouth.whisper`, trained to transcribe 680 000 hours of speech; with the
training videos' offsets removed, leave-one-video-out 0.667 -> 0.706, the clips 0.479 ->
0.530, regressor alone, on 2026-11-30). (A learned keyword-spotting embedding, Google's
speech_embedding, was an input before the encoder came; beside it, it added nothing:
leave-one-video-out 0.721 with it, 0.720 without, and was dropped.) Context: each of these
averaged over
``CONTEXT_WIDTH`` steps at each of ``CONTEXT_OFFSETS`` (the lips move before the sound, so
the future counts as much as the past).
"""

from __future__ import annotations

import numpy as np

from dubber.mouth.acoustics import STEPS_PER_SECOND, Acoustics
from dubber.mouth.track import VISEMES
from dubber.mouth.whisper import N_WHISPER

CONTEXT_OFFSETS = (-15, -10, -5, 0, 5, 10, 15, 20, 25, 30)  # steps (10 ms) from the frame
CONTEXT_WIDTH = 5  # steps averaged at each offset
ACOUSTIC_NAMES = ("loudness", "vad", "f1", "f2", "voiced", "pitch", "rise")
N_POSTERIORS = 42  # base phones of PocketSphinx's en-us model (dubber.mouth.posteriors)
SILENCE_PHONE = 32  # its silence phone, SIL
N_BASE = N_POSTERIORS + len(ACOUSTIC_NAMES) + len(VISEMES) + N_WHISPER
N_FEATURES = N_BASE * len(CONTEXT_OFFSETS) + 1  # + a constant 1


def step_features(posteriors: np.ndarray, ac: Acoustics, visemes: np.ndarray,
                  whisper: np.ndarray) -> np.ndarray:
    """Features of every step without context.

    Args:
        posteriors: shape = (n, N_POSTERIORS): the phones' posteriors per step
            (:meth:`~dubber.mouth.posteriors.PhoneModel.posteriors`).
        ac: the voice's acoustics, n steps.
        visemes: shape = (n,), int: the rules' viseme per step (index into VISEMES).
        whisper: shape = (n, N_WHISPER): :class:`~dubber.mouth.whisper.SpeechEncoder` per
            step (a step more or fewer, from rounding, is padded or cut).

    Returns:
        shape = (n, N_BASE), float32.
    """
    n = len(ac)
    post = np.asarray(posteriors, np.float32)[:n]
    if post.shape != (n, N_POSTERIORS):
        raise ValueError(f"posteriors of shape {post.shape}, expected {(n, N_POSTERIORS)}")
    loud = np.clip(ac.loudness / 20.0, -4.0, 0.5)
    # a 3-step mean (as np.convolve's "same" mode, which lengthens fewer than 3 steps)
    smooth = np.convolve(loud, np.ones(3) / 3, mode="full")[1:n + 1]
    rise = np.gradient(smooth) * 5.0 if n > 1 else np.zeros(n)
    acoustic = np.stack([loud, ac.vad, ac.f1 * ac.voiced, ac.f2 * ac.voiced, ac.voiced,
                         ac.pitch * ac.voiced, np.clip(rise, -3, 3)], 1)
    shapes = np.zeros((n, len(VISEMES)), np.float32)
    shapes[np.arange(n), np.asarray(visemes[:n], np.int64)] = 1.0
    return np.concatenate([post, acoustic.astype(np.float32), shapes,
                           _fit_length(whisper, n, N_WHISPER, "whisper encoding")], 1)


def _fit_length(x: np.ndarray, n: int, width: int, what: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != width or abs(len(x) - n) > 1 or not len(x):
        raise ValueError(f"{what} of shape {x.shape}, expected ({n}, {width})")
    return np.concatenate([x, x[-1:]])[:n] if len(x) < n else x[:n]


def silence_steps(whisper_silence: np.ndarray | None = None) -> np.ndarray:
    """The step features of silence, shape = (N_BASE,): the silent phone, the loudness
    floor, the rest viseme and ``whisper_silence`` (what the encoder gives for silence in
    this voice's recording; zeros when not given)."""
    silence = np.zeros(N_BASE, np.float32)
    silence[SILENCE_PHONE] = 1.0
    silence[N_POSTERIORS] = -4.0  # loudness floor
    silence[N_POSTERIORS + len(ACOUSTIC_NAMES) + VISEMES.index("X")] = 1.0
    if whisper_silence is not None:
        silence[N_BASE - N_WHISPER:] = whisper_silence
    return silence


def frame_features(steps: np.ndarray, times: np.ndarray,
                   offsets: tuple[int, ...] = CONTEXT_OFFSETS,
                   width: int = CONTEXT_WIDTH,
                   silence: np.ndarray | None = None) -> np.ndarray:
    """Features with context at each frame's presentation time.

    Args:
        steps: shape = (n, N_BASE) from :func:`step_features`.
        times: shape = (N,), seconds from the audio's first sample.
        offsets, width: the context (steps); the defaults are the shipped regressor's.
        silence: shape = (N_BASE,): the step features of silence in this recording
            (:func:`silence_steps`; default: with a zero encoding).

    Returns:
        shape = (N, N_FEATURES), float32; outside the audio, the features of silence.
    """
    padded, centre = _padded(steps, times, offsets, width, silence)
    csum = np.concatenate([np.zeros((1, padded.shape[1])), np.cumsum(padded, 0, np.float64)])
    cols = [_window_means(csum, centre + off, width) for off in offsets]
    cols.append(np.ones((len(centre), 1)))
    return np.concatenate(cols, 1).astype(np.float32)


def frame_projection(steps: np.ndarray, times: np.ndarray, weights: np.ndarray,
                     offsets: tuple[int, ...] = CONTEXT_OFFSETS,
                     width: int = CONTEXT_WIDTH,
                     silence: np.ndarray | None = None) -> np.ndarray:
    """``frame_features(steps, times, ...) @ weights`` without the features.

    A window's mean times a weight is the window's mean of the weighted steps, so each
    step is projected once (on ``k`` columns per offset) and only the projections are
    averaged: for a linear regressor, some 100 times less work than its 4421 inputs.

    Args:
        steps, times, offsets, width, silence: as :func:`frame_features`.
        weights: shape = (N_FEATURES, k): the rows in :func:`frame_features`' column order
            (offset by offset, then the constant).

    Returns:
        shape = (N, k), float64.
    """
    padded, centre = _padded(steps, times, offsets, width, silence)
    base = padded.shape[1]
    w = np.asarray(weights, np.float64)
    if w.shape[0] != base * len(offsets) + 1:
        raise ValueError(f"weights of {w.shape[0]} rows for {base * len(offsets) + 1} features")
    k = w.shape[1]
    stacked = w[:-1].reshape(len(offsets), base, k).transpose(1, 0, 2).reshape(base, -1)
    projected = padded.astype(np.float64) @ stacked  # (steps, offsets * k)
    csum = np.concatenate([np.zeros((1, projected.shape[1])), np.cumsum(projected, 0)])
    out = np.tile(w[-1], (len(centre), 1))
    for i, off in enumerate(offsets):
        out += _window_means(csum[:, i * k:(i + 1) * k], centre + off, width)
    return out


def _padded(steps: np.ndarray, times: np.ndarray, offsets: tuple[int, ...], width: int,
            silence: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The steps every frame's windows reach, with silence around them, and each frame's
    centre step in them."""
    n = len(steps)
    silence = silence_steps() if silence is None else np.asarray(silence, np.float32)
    reach = max(abs(o) for o in offsets) + width // 2 + 1  # beyond, every window is silence
    pad = 2 * reach
    centre = np.rint(np.asarray(times, np.float64) * STEPS_PER_SECOND).astype(np.int64)
    centre = np.clip(centre, -reach, n + reach)
    if len(centre):  # only the steps these frames' windows reach (a block of a long film)
        lo = int(np.clip(centre.min() - reach, 0, n))
        hi = int(np.clip(centre.max() + reach, lo, n))
        steps, centre = steps[lo:hi], centre - lo
    padded = np.concatenate([np.tile(silence, (pad, 1)), steps, np.tile(silence, (pad, 1))])
    return padded, centre + pad


def _window_means(csum: np.ndarray, centre: np.ndarray, width: int) -> np.ndarray:
    """Means over ``width`` steps around each ``centre`` from the cumulative sums ``csum``
    (one row more than the steps)."""
    half = width // 2
    a = np.clip(centre - half, 0, len(csum) - 1)
    b = np.clip(centre + half + 1, 0, len(csum) - 1)
    return (csum[b] - csum[a]) / np.maximum(b - a, 1)[:, None]
