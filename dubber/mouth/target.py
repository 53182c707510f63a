"""The target mouth of every dubbed frame, in the actor's own units.

The driver (speech -> :class:`~dubber.mouth.track.MouthTrack`) says what any mouth does
for the dub; :func:`actor_targets` maps that onto this actor: the opening through the
actor's own distribution of openings in the bank (quantile mapping: the driver's quiet
and wide frames become this actor's closed and widest mouths), and width and rounding as
this actor moves them with the opening (a least-squares line over the bank), shifted by
the driver's own width and rounding. Silence closes the mouth to the actor's rest.
"""

from __future__ import annotations

import numpy as np

from dubber.mouth.bank import MouthBank
from dubber.mouth.track import VISEMES, MouthTrack

REST_QUANTILE = 0.05  # the actor's closed mouth: this quantile of the bank's openings


def envelope_track(audio, sample_rate: int, times: np.ndarray) -> MouthTrack:
    """A mouth track from the dub's loudness alone (speech band): the stand-in driver.

    Opening follows the speech envelope (dB above the track's noise floor, scaled to its
    loud speech), smoothed over ~70 ms; width and rounding stay at 0 (the actor's own
    line decides them).
    """
    from dubber.faces.speaker import speech_envelope

    env = speech_envelope(audio, sample_rate, times)
    floor = np.percentile(env, 10)
    peak = np.percentile(env, 95)
    level = np.clip((env - floor - 6.0) / max(peak - floor - 6.0, 1e-6), 0.0, 1.0)
    if len(times) > 1:
        fps = 1.0 / max(float(np.median(np.diff(times))), 1e-6)
        k = max(1, int(round(0.07 * fps)))
        level = np.convolve(np.pad(level, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1),
                            mode="same")[k:-k]
    speech = level > 0.1
    viseme = np.where(speech, VISEMES.index("C"), VISEMES.index("X")).astype(np.uint8)
    params = np.zeros((len(times), 3), np.float32)
    params[:, 0] = level
    return MouthTrack(np.asarray(times, np.float64), viseme, params, speech,
                      np.where(speech, 0.5, 1.0).astype(np.float32))


def dub_mouth_track(audio, times: np.ndarray) -> MouthTrack:
    """The driver's mouth track of the dub (an :class:`~dubber.media.audio.AudioTrack` at
    16 kHz) at the frames' presentation ``times`` (seconds)."""
    return envelope_track(audio, 16000, times)


def actor_targets(track: MouthTrack, bank: MouthBank) -> np.ndarray:
    """The target parameters of ``track``'s frames for the actor of ``bank``.

    Args:
        track: the driver's mouth track over the frames to dub (the dub's speech).
        bank: the actor's bank (its per-frame parameters are the actor's range).

    Returns:
        shape = (T, 3) float32: opening, width, rounding in the actor's units.
    """
    own = bank.params[bank.kept] if bank.kept.any() else bank.params
    out = np.zeros((len(track), 3), np.float32)
    if len(own) == 0:
        return out
    opening = np.sort(own[:, 0])
    rest = float(np.quantile(opening, REST_QUANTILE))
    driver = track.opening.astype(np.float64)
    speaking = driver[track.speech] if track.speech.any() else driver
    # Quantile mapping: a driver opening's rank among the dub's speech -> the same rank of
    # the actor's openings (from rest up).
    ranks = np.searchsorted(np.sort(speaking), driver, side="right") / max(len(speaking), 1)
    actor = opening[opening >= rest]
    mapped = np.quantile(actor if len(actor) else opening, np.clip(ranks, 0.0, 1.0))
    mapped = np.where(track.speech, mapped, rest)
    mapped = np.where(driver <= 0, rest, mapped)
    out[:, 0] = mapped
    # Width and rounding as this actor moves them with the opening, plus the driver's own
    # deviation (0 when the driver has no width or rounding).
    for j in (1, 2):
        if np.ptp(own[:, 0]) > 1e-6:
            slope, icept = np.polyfit(own[:, 0], own[:, j], 1)
        else:
            slope, icept = 0.0, float(np.median(own[:, j]))
        dev = track.params[:, j] - (np.median(track.params[track.speech, j])
                                    if track.speech.any() else 0.0)
        out[:, j] = icept + slope * mapped + np.where(track.speech, dev, 0.0)
    return out
