"""Per-actor calibration: the driver's output mapped to one actor's own lips.

The analysis pass has, for every speaking track, the film's ORIGINAL audio and the actor's
face-mesh mouth parameters. :func:`calibrate` fits there, per actor:

- ``shift``: the lag (at most ``MAX_SHIFT_FRAMES`` frames, found to a fraction of one) at
  which the driver's opening follows this actor's best (some actors lead their sound more;
  some films are muxed a frame off);
- ``delta``: an adaptation of the driver's linear regressor to this actor (ridge towards
  the shipped map, so a few seconds of footage move it only as far as they support);
  needs ``MIN_ADAPT_FRAMES`` measured frames, else None;
- ``gain`` and ``offset`` per parameter: how wide this actor opens, spreads and rounds
  (a robust affine fit, Huber weights);
- ``rest``: this actor's shut mouth (opening: their 5th percentile) and their width and
  rounding at rest (silence).

Use it with the dub: ``MouthDriver.track(dub, times, calibration=cal.for_dub())``
(range and rest: the lag and the adaptation belong to the film's own sound, see
:meth:`Calibration.for_dub`), with the film's own audio
``MouthDriver.track(original, times, calibration=cal)`` (all of it), or
``cal.apply(track)`` on a track of the film's own audio already made (shift, range and
rest; not ``delta``). The analysis pass stores one per speaking track with the tracks
(``Track.calibration``, JSON, editable: a post-production user may change a gain or the
rest), fitted without ``delta``, which no dub uses.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from dubber.mouth.track import VISEMES, MouthTrack

log = logging.getLogger(__name__)

MAX_SHIFT_FRAMES = 4  # a corpus video is muxed 160 ms (4 frames at 25 fps) off its audio
ADAPT_LAMBDA = 10000.0  # ridge towards the shipped map (standardised features). Chosen on
# the training videos, each with the regressor fitted without it, calibrated on its first
# half and measured on the second (opening r, mean of 6). Without the speech embedding
# (4421 inputs, 2026-11-30 14:00 UTC): lambda 3000 / 10000 / 30000: 0.675 / 0.679 / 0.670.
# With the Whisper encoder's 3840 inputs beside it (6341 in all, 12:50 UTC): lambda 1000 /
# 3000 / 10000 / 30000 / 100000: 0.665 / 0.674 / 0.681 / 0.675 / 0.659. With the speech
# embedding's 1920 inputs (2501 in all): 300 / 1000 / 3000 / 10000: 0.604 / 0.626 / 0.639 /
# 0.636.
# Before it (581 inputs, no calibration: 0.283): 300 / 1000 / 3000 with lags up to 2
# frames 0.430 / 0.445 / 0.436, up to 4 frames 0.453 / 0.474 / 0.472; calibrated on its
# first 5 s only (none: 0.319), up to 4 frames: 0.393 / 0.396 / 0.386
MIN_ADAPT_FRAMES = 50
MIN_FRAMES = 10  # fewer measured frames: no calibration can be fitted
SCHEMA = "dubber.mouth-calibration/1"

_X = VISEMES.index("X")
_A = VISEMES.index("A")


@dataclass(frozen=True)
class Calibration:
    """One actor's mapping (see the module docstring); arrays are float64."""

    gain: np.ndarray  # (3,): actor units per driver unit
    offset: np.ndarray  # (3,): actor units
    rest: np.ndarray  # (3,): the actor's mouth at rest, opening shut
    shift: float = 0.0  # s: the driver is read this much later than the frame
    delta: np.ndarray | None = None  # (N_FEATURES, 3): regressor adaptation, or None
    frames: int = 0  # measured frames it was fitted on
    fit_r: tuple[float, float, float] = (float("nan"),) * 3  # r on those frames, per param

    def map(self, track: MouthTrack, driver_rest: np.ndarray | None = None) -> MouthTrack:
        """Range and rest only: driver units -> this actor's (no shift).

        Frames the rules shut (X) take the actor's rest; closures (A) the actor's shut
        opening; no opening goes below it.
        """
        p = self.offset + self.gain * track.params.astype(np.float64)
        shut = track.viseme == _X
        p[shut] = self.rest
        p[track.viseme == _A, 0] = self.rest[0]
        p[:, 0] = np.maximum(p[:, 0], self.rest[0])
        return dataclasses.replace(track, params=p.astype(np.float32))

    def for_dub(self) -> "Calibration":
        """This calibration for another sound than the one it was fitted on (the dub):
        range and rest only, without ``shift`` and ``delta``.

        The lag was found between the film's OWN audio and the actor's lips, so it holds
        the file's muxing offset as well as the actor's lead (the sync model finds the same
        offsets: katie_512_mpeg4_en +2 frames, its calibration +80 ms). A dub is timed to
        the picture, not to the original sound, and the regressor was fitted on aligned
        sound, so its timing is the lips' own: carried over, katie's lag put the dubbed
        mouth 3 frames off hi_news_22s (check-sync: out of sync, confidence 0.24 at +3);
        without it, in sync at +1.

        The adaptation learns how this actor's lips follow this actor's VOICE (its
        speaker's features, room and microphone among them) and does not carry over to
        another voice: on 8 dubs of shared clips in other voices and languages, the sync
        model's confidence in the output against the dub was higher without it on 7
        (mean over the shots 0.131 with it, 0.158 without; weights/README.md, "Calibration
        in a dub")."""
        return dataclasses.replace(self, shift=0.0, delta=None)

    def apply(self, track: MouthTrack) -> MouthTrack:
        """This actor's version of a plain driver track: shifted (interpolated in time),
        then :meth:`map` ped. (``delta`` needs the speech: use
        ``MouthDriver.track(..., calibration=self)`` for it.)"""
        if abs(self.shift) > 1e-9 and len(track) > 1:
            t = track.times
            at = t + self.shift
            params = np.stack([np.interp(at, t, track.params[:, i]) for i in range(3)], 1)
            k = np.clip(np.searchsorted(t, at), 1, len(t) - 1)
            k = np.where(np.abs(t[k - 1] - at) <= np.abs(t[k] - at), k - 1, k)  # nearest
            track = MouthTrack(t, track.viseme[k], params.astype(np.float32),
                               track.speech[k], track.confidence[k])
        return self.map(track)

    # -- JSON (stored in the tracks file) ------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "gain": np.round(self.gain, 5).tolist(),
            "offset": np.round(self.offset, 5).tolist(),
            "rest": np.round(self.rest, 5).tolist(),
            "shift": round(float(self.shift), 4),
            "frames": int(self.frames),
            "fit_r": [None if not np.isfinite(r) else round(float(r), 3) for r in self.fit_r],
        }
        if self.delta is not None:
            out["delta"] = np.round(self.delta, 5).tolist()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Calibration":
        """Raises ValueError when ``data`` is not a calibration."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a mouth calibration (schema {SCHEMA!r} expected)")
        try:
            gain, offset, rest = (np.asarray(data[k], np.float64).reshape(3)
                                  for k in ("gain", "offset", "rest"))
            delta = data.get("delta")
            delta = None if delta is None else np.asarray(delta, np.float64).reshape(-1, 3)
            r = tuple(np.nan if v is None else float(v) for v in data.get("fit_r", [None] * 3))
            shift = float(data.get("shift", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad mouth calibration: {exc}") from None
        for name, v in (("gain", gain), ("offset", offset), ("rest", rest), ("shift", shift),
                        ("delta", 0.0 if delta is None else delta)):
            if not np.all(np.isfinite(v)):  # JSON takes NaN and Infinity; a mouth cannot
                raise ValueError(f"bad mouth calibration: {name} is not a finite number")
        return cls(gain, offset, rest, shift, delta, int(data.get("frames", 0)),
                   r)  # type: ignore[arg-type]


def _huber_affine(x: np.ndarray, y: np.ndarray, iters: int = 10) -> tuple[float, float]:
    """y ~ a + b x, robust (iteratively reweighted least squares, Huber weights)."""
    w = np.ones_like(x)
    a, b = float(np.mean(y)), 0.0
    for _ in range(iters):
        sw = w.sum()
        mx, my = (w * x).sum() / sw, (w * y).sum() / sw
        vx = (w * (x - mx) ** 2).sum()
        b = float((w * (x - mx) * (y - my)).sum() / vx) if vx > 0 else 0.0
        a = float(my - b * mx)
        res = y - a - b * x
        s = 1.4826 * np.median(np.abs(res)) + 1e-9
        u = np.abs(res) / (1.345 * s)
        w = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-9))
    return a, b


def _lag_margin(frames: int) -> float:
    """How much better than lag 0 another lag must fit to be taken: r's noise shrinks as
    1/sqrt(frames), and on a few seconds a wrong lag often wins by chance. (On the training
    videos, calibrated on their first 5 s: a fixed 0.02 0.396, 0.5/sqrt(n) 0.402, 2/sqrt(n)
    0.383; on their first halves, 0.474 for the first two.)"""
    return max(0.02, 0.5 / np.sqrt(max(frames, 1)))


def _best_lag(rs: list[float], frames: int) -> int:
    """The lag (frames) of the best r among ``rs`` (lags ``-MAX_SHIFT_FRAMES`` to
    ``MAX_SHIFT_FRAMES``), taken only if it beats lag 0 by :func:`_lag_margin`; else 0.

    (Until 2026-11-30 the margin was asked of each lag against the best lag before it, so
    of two lags close in r the more negative was taken; the training videos tie, the clips
    lost 0.02 that the order had given one of them: weights/README.md.)"""
    zero = rs[MAX_SHIFT_FRAMES]
    found = [(r, -abs(k), k) for k, r in enumerate(rs, -MAX_SHIFT_FRAMES)
             if k and np.isfinite(r)]
    if not found:
        return 0
    r, _, k = max(found)
    return k if not np.isfinite(zero) or r > zero + _lag_margin(frames) else 0


def _peak_fraction(rs: list[float], i: int) -> float:
    """Where between its neighbours the maximum of ``rs`` around index ``i`` lies, in
    [-0.5, 0.5] (the vertex of the parabola through the three; 0 at an end of the range,
    or where the three do not bend down). A file's offset is not a whole number of frames:
    on the training videos (first half -> second) the lag to the fraction 0.679 -> 0.683."""
    if not 0 < i < len(rs) - 1:
        return 0.0
    before, at, after = rs[i - 1], rs[i], rs[i + 1]
    bend = before - 2 * at + after
    if not np.isfinite(bend) or bend >= 0:
        return 0.0
    return float(np.clip(0.5 * (before - after) / bend, -0.5, 0.5))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def calibrate(params: np.ndarray, times: np.ndarray, original, driver=None,
              adapt: bool = True) -> Calibration:
    """Fit an actor's calibration on the original audio and the actor's own lips.

    Args:
        params: shape = (N, 3): the actor's face-mesh mouth parameters per frame
            (:func:`dubber.mouth.params.mouth_params`; NaN rows where unmeasured), or
            shape = (N, 478, 2) face-mesh points (NaN where no face).
        times: shape = (N,): those frames' times in seconds on the original audio's clock.
        original: the original audio, 16 kHz mono samples or a
            :class:`~dubber.mouth.driver.SpeechAnalysis` of it.
        driver: a :class:`~dubber.mouth.driver.MouthDriver` (default: a new one).
        adapt: fit ``delta`` too (else range, rest and shift only).

    Raises:
        ValueError: fewer than MIN_FRAMES measured frames.
    """
    from dubber.mouth.driver import MouthDriver, SpeechAnalysis
    from dubber.mouth.params import mouth_params

    driver = driver or MouthDriver()
    y = np.asarray(params, np.float64)
    if y.ndim == 3:
        y = mouth_params(y).astype(np.float64)
    times = np.asarray(times, np.float64)
    ok = np.all(np.isfinite(y), 1)
    if ok.sum() < MIN_FRAMES:
        raise ValueError(f"{int(ok.sum())} measured frames: at least {MIN_FRAMES} are needed "
                         "to calibrate")
    a = original if isinstance(original, SpeechAnalysis) else driver.analyse(original)
    period = float(np.median(np.diff(times))) if len(times) > 1 else 0.04
    # 1. the lag: the best whole frame, then its fraction from the neighbours' r
    lags = range(-MAX_SHIFT_FRAMES, MAX_SHIFT_FRAMES + 1)
    rs = [_corr(driver.track(a, times + k * period).opening[ok], y[ok, 0]) for k in lags]
    lag = _best_lag(rs, int(ok.sum()))
    shift = (lag + _peak_fraction(rs, lag + MAX_SHIFT_FRAMES)) * period \
        if np.isfinite(rs[lag + MAX_SHIFT_FRAMES]) else 0.0
    # 2. the adaptation
    delta = None
    if adapt and ok.sum() >= MIN_ADAPT_FRAMES:
        import torch

        reg = driver.regressor
        x = torch.from_numpy(driver.features(a, times + shift))
        xn = ((x - reg.in_mean) / reg.in_std).numpy().astype(np.float64)[ok]
        z0 = driver.standardised(a, times + shift)[ok].astype(np.float64)
        yz = (y[ok] - y[ok].mean(0)) / (y[ok].std(0) + 1e-9)
        delta = np.linalg.solve(xn.T @ xn + ADAPT_LAMBDA * np.eye(xn.shape[1]),
                                xn.T @ (yz - z0))
    # 3. range and rest
    base = driver.track(a, times, Calibration(np.ones(3), np.zeros(3), driver.rest, shift,
                                              delta))
    p = base.params.astype(np.float64)
    gain, offset = np.ones(3), np.zeros(3)
    for i in range(3):
        sel = ok & (base.viseme != _X)
        if sel.sum() < MIN_FRAMES:
            sel = ok
        o, g = _huber_affine(p[sel, i], y[sel, i])
        floor = 0.25 * np.std(y[sel, i]) / max(np.std(p[sel, i]), 1e-9)
        g = max(g, floor)
        gain[i], offset[i] = g, float(np.median(y[sel, i] - g * p[sel, i]))
    silent = ok & ~base.speech
    rest = np.array([np.percentile(y[ok, 0], 5),
                     *(np.median(y[silent, 1:], 0) if silent.sum() >= 5
                       else np.median(y[ok, 1:], 0))])
    cal = Calibration(gain, offset, rest, shift, delta, int(ok.sum()))
    fitted = cal.map(base, driver.rest).params
    fit_r = tuple(_corr(fitted[ok, i], y[ok, i]) for i in range(3))
    log.info("calibrated on %d frames: shift %.0f ms, r %s", ok.sum(), shift * 1000,
             ", ".join(f"{v:.2f}" for v in fit_r))
    return dataclasses.replace(cal, fit_r=fit_r)


# -- every speaking track of an analysis ------------------------------------------------

CALIBRATION_SECONDS = 60.0  # s: at most this much of a track's speech is fitted on
MARGIN = 1.0  # s of audio read around the fitted frames (the features' context)


def speaking_frames(tracks, track) -> np.ndarray:
    """Frame indices on which ``track`` is re-rendered (the shots' windows/selection)."""
    return np.array([f for f in range(track.first, track.last + 1)
                     if track.id in tracks.speakers_at(f)], np.int64)


def calibrate_tracks(tracks, audio, frame_times: np.ndarray, driver=None,
                     seconds: float = CALIBRATION_SECONDS):
    """Fit a calibration for every speaking track that has mouth parameters and none yet.

    Calibrations already in the tracks (from the cache, or edited by hand) are kept. Each
    track reads only the original audio around its own speaking frames (at most
    ``seconds`` of them), so memory does not grow with the film.

    Args:
        tracks: a :class:`~dubber.faces.tracks_file.Tracks`.
        audio: the ORIGINAL audio, an :class:`~dubber.media.audio.AudioTrack` (or anything
            with ``samples(start, stop)``) or a 16 kHz mono array.
        frame_times: shape = (frame_count,): each frame's time in seconds.
        driver: a :class:`~dubber.mouth.driver.MouthDriver` (default: a new one).

    Returns:
        the tracks with ``calibration`` filled where it could be fitted.
    """
    from dubber.mouth.driver import SAMPLE_RATE, MouthDriver

    frame_times = np.asarray(frame_times, np.float64)
    out = []
    for t in tracks.tracks:
        if t.calibration is not None or t.mouth is None:
            out.append(t)
            continue
        frames = speaking_frames(tracks, t)
        frames = frames[frames < len(frame_times)]
        if len(frames) < MIN_FRAMES:
            out.append(t)
            continue
        times = frame_times[frames]
        keep = times <= times[0] + seconds
        frames, times = frames[keep], times[keep]
        y = t.mouth[frames - t.first]
        start = max(times[0] - MARGIN, 0.0)
        a, b = int(start * SAMPLE_RATE), int((times[-1] + MARGIN) * SAMPLE_RATE)
        if hasattr(audio, "samples"):
            samples = audio.samples(a, b)
        else:
            samples = np.asarray(audio[a:b], np.float32)
        driver = driver or MouthDriver()
        try:  # without the adaptation: only the film's own sound could use it (for_dub)
            cal = calibrate(y, times - a / SAMPLE_RATE, samples, driver, adapt=False)
        except ValueError as exc:
            log.info("track %d: no calibration (%s)", t.id, exc)
            out.append(t)
            continue
        out.append(dataclasses.replace(t, calibration=cal.to_json()))
    return dataclasses.replace(tracks, tracks=tuple(out))


def track_calibration(track) -> Calibration | None:
    """The calibration stored with a track (None when it has none).

    An adaptation (``delta``) fitted for a driver with other inputs (an older tracks file)
    is dropped with a note in the log: no dub uses the adaptation (:meth:`Calibration.
    for_dub`), and the calibration's range and rest still hold.

    Raises:
        InputError: the stored calibration is malformed (an edit gone wrong).
    """
    if track.calibration is None:
        return None
    from dubber.errors import InputError
    from dubber.mouth.features import N_FEATURES

    try:
        cal = Calibration.from_json(track.calibration)
    except ValueError as exc:
        raise InputError(f"track {track.id}: {exc}") from None
    if cal.delta is not None and len(cal.delta) != N_FEATURES:
        log.info("track %d: its mouth calibration's adaptation was fitted for a driver with %d "
                 "inputs, this one has %d: ignored (a dub does not use it)", track.id,
                 len(cal.delta), N_FEATURES)
        cal = dataclasses.replace(cal, delta=None)
    return cal
