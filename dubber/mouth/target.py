"""The target mouth of every dubbed frame, in the actor's own units.

The driver (speech -> :class:`~dubber.mouth.track.MouthTrack`, :class:`DubMouths`) says
what a mouth does for the dub (this actor's, when the analysis calibrated the driver on
the actor's original lines); :func:`actor_targets` maps that onto the actor's own bank:
the opening through the actor's own distribution of openings in the bank (quantile
mapping: the driver's quiet and wide frames become this actor's closed and widest
mouths), and width and rounding as this actor moves them with the opening (a
least-squares line over the bank), shifted by the driver's own width and rounding.
Where the driver shuts the mouth (viseme X: silence) it takes the actor's rest; in a pause
the driver only relaxes (a breath between phrases, a short silence) it keeps the driver's
opening, mapped like speech: talkers breathe through open lips.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from dubber.mouth.bank import MouthBank
from dubber.mouth.track import VISEMES, MouthTrack

REST_QUANTILE = 0.05  # the actor's closed mouth: this quantile of the bank's openings
_X = VISEMES.index("X")


class DubMouths:
    """The dub's mouth for each dubbed actor: the driver's mouth track of the dub
    (:class:`~dubber.mouth.driver.MouthDriver`: phones, voice activity, formants, timing
    rules), through the actor's calibration when the analysis fitted one.

    Args:
        dub_path: the dub track (any file with an audio stream).
        times: shape = (N,): every video frame's presentation time in seconds.
        weights_dir: where the driver's weights are (default: the weights folder).
        track_dubs: track id -> that character's own dub (per-character stems: a path or
            anything with a ``path``), instead of ``dub_path``.
    """

    def __init__(self, dub_path, times: np.ndarray, weights_dir=None,
                 track_dubs: Mapping[int, object] | None = None) -> None:
        from dubber.mouth.driver import MouthDriver

        self.times = np.asarray(times, np.float64)
        self.driver = MouthDriver(weights_dir)
        self.dub_path = dub_path
        self.track_dubs = track_dubs or {}
        self._analyses: dict[str, object] = {}

    def _analysis(self, path) -> object:
        from dubber.media.audio import load_audio

        key = str(path)
        if key not in self._analyses:  # each audio is recognised once
            self._analyses[key] = self.driver.analyse(load_audio(path, sample_rate=16000))
        return self._analyses[key]

    def for_track(self, track, frames: np.ndarray) -> MouthTrack:
        """The dub's mouth track at ``frames`` (frame numbers) for the actor of ``track``
        (a :class:`~dubber.faces.tracks_file.Track`)."""
        from dubber.mouth.calibrate import track_calibration

        own = self.track_dubs.get(track.id)
        path = self.dub_path if own is None else getattr(own, "path", own)
        cal = track_calibration(track)
        return self.driver.track(self._analysis(path), self.times[np.asarray(frames)],
                                 calibration=cal.for_dub() if cal is not None else None)


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
    shut = track.viseme == _X
    mapped = np.where(shut | (driver <= 0), rest, mapped)
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
        out[:, j] = icept + slope * mapped + np.where(shut, 0.0, dev)
    return out


def cue_table(mouths: DubMouths, tracks, per_track: Mapping[int, np.ndarray]
              ) -> dict[tuple[int, int], np.ndarray]:
    """The generator's mouth cue for every dubbed face: (frame, track id) -> (3,) float32.

    The driver's mouth track of the dub at the track's dubbed frames (through the actor's
    calibration), each parameter standardised over those frames as the generator's
    training standardises the face mesh's over a segment
    (:func:`dubber.train.apertures.standardise`): the generator is told how this mouth
    moves against its usual.

    Args:
        mouths: the dub's mouths (:class:`DubMouths`).
        tracks: the analysis (:class:`~dubber.faces.tracks_file.Tracks`).
        per_track: track id -> its dubbed frames (:func:`dubber.mouth.plan.dubbed_frames`).
    """
    from dubber.train.apertures import standardise

    out: dict[tuple[int, int], np.ndarray] = {}
    for tid, frames in per_track.items():
        params = mouths.for_track(tracks.track(tid), frames).params
        z = np.stack([standardise(c) for c in np.asarray(params, np.float64).T], 1)
        for f, row in zip(np.asarray(frames).tolist(), z.astype(np.float32)):
            out[(int(f), tid)] = row
    return out
