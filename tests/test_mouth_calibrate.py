"""Per-actor calibration: fitted on original audio + the actor's lips, stored with the
tracks, applied to a dub's track."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest

from dubber.errors import InputError
from dubber.faces.tracks_file import Shot, Track, Tracks, Window
from dubber.media.audio import load_audio
from dubber.mouth.calibrate import (Calibration, _best_lag, calibrate, calibrate_tracks,
                                    track_calibration)
from dubber.mouth.track import VISEMES
from tests.helpers import CLIPS, SPEECH, needs_speech


@pytest.fixture(scope="module")
def radio(driver):
    return driver.analyse(load_audio(SPEECH / "en_radio_8s.wav"))


def _actor(driver, analysis, times, gain, offset, lag=0.0):
    """A synthetic actor whose lips are the driver's, scaled, shifted and lagging."""
    base = driver.track(analysis, times + lag).params.astype(np.float64)
    return offset + gain * base


@needs_speech
def test_calibration_learns_an_actors_range_rest_and_lag(driver, radio):
    times = np.arange(0, radio.duration, 1 / 25)
    gain, offset = np.array([2.0, 1.3, 0.7]), np.array([0.05, 0.1, 0.02])
    actor = _actor(driver, radio, times, gain, offset, lag=0.08)
    actor[::17] = np.nan  # frames the mesh missed
    cal = calibrate(actor, times, radio, driver, adapt=False)
    assert abs(cal.shift - 0.08) < 0.005  # two frames (40 ms each)
    assert np.allclose(cal.gain, gain, rtol=0.1) and np.allclose(cal.offset, offset, atol=0.01)
    # not 1: these frames fall on the rules' 10 ms grid, so the lag's sub-millisecond miss
    # (the parabola's vertex) samples the shape before a change on some (0.95 here; lag 0
    # gives 0.62, 20 ms off 0.93)
    assert min(cal.fit_r) > 0.94
    ok = np.all(np.isfinite(actor), 1)
    assert abs(cal.rest[0] - np.percentile(actor[ok, 0], 5)) < 1e-9
    # the dub's track in this actor's units: silences take the actor's rest
    dub = driver.track(radio, times, calibration=cal)
    r = np.corrcoef(dub.opening[ok], actor[ok, 0])[0, 1]
    assert r > 0.94
    shut = dub.viseme == VISEMES.index("X")
    assert np.allclose(dub.params[shut], cal.rest)
    assert dub.opening.min() >= cal.rest[0] - 1e-6


@needs_speech
def test_the_lag_is_found_between_frames(driver, radio):
    # an actor 1.5 frames behind the sound: neither whole frame is the lag
    times = np.arange(0, radio.duration, 1 / 25)
    actor = _actor(driver, radio, times, np.array([1.5, 1.0, 1.0]), np.zeros(3), lag=0.06)
    cal = calibrate(actor, times, radio, driver, adapt=False)
    assert abs(cal.shift - 0.06) < 0.008
    whole = dataclasses.replace(cal, shift=round(cal.shift / 0.04) * 0.04)
    track = driver.track(radio, times)
    assert (np.corrcoef(cal.apply(track).opening, actor[:, 0])[0, 1]
            > np.corrcoef(whole.apply(track).opening, actor[:, 0])[0, 1] + 0.01)


def test_the_lag_taken_is_the_best_one_if_it_beats_lag_0_by_the_margin():
    # r over the lags -4..4 of a training video's first half (address_en_512_10s): -1 fits
    # best; it was -2, the margin having been asked of -1 against -2 instead of against 0
    rs = [0.51, 0.63, 0.727, 0.740, 0.62, 0.41, 0.21, 0.08, 0.03]
    assert _best_lag(rs, 125) == -1
    assert _best_lag(rs[::-1], 125) == 1
    # better than lag 0, but by less than the margin (0.5 / sqrt(frames)): lag 0
    close = [0.1, 0.2, 0.3, 0.5, 0.47, 0.3, 0.2, 0.1, 0.0]
    assert _best_lag(close, 100) == 0 and _best_lag(close, 10000) == -1
    assert _best_lag([float("nan")] * 4 + [0.3] + [float("nan")] * 4, 100) == 0
    assert _best_lag([float("nan")] * 9, 100) == 0


@needs_speech
def test_apply_maps_a_plain_track(driver, radio):
    times = np.arange(0, radio.duration, 1 / 30)
    track = driver.track(radio, times)
    cal = Calibration(np.array([2.0, 1.0, 1.0]), np.array([0.01, 0.0, 0.0]),
                      np.array([0.02, 0.5, 0.3]))
    out = cal.apply(track)
    talking = track.viseme != VISEMES.index("X")
    assert np.allclose(out.opening[talking], np.maximum(0.01 + 2 * track.opening[talking], 0.02),
                       atol=1e-6)
    assert np.allclose(out.params[~talking], [0.02, 0.5, 0.3])
    assert np.array_equal(out.viseme, track.viseme) and np.array_equal(out.times, times)
    later = dataclasses.replace(cal, shift=1 / 30).apply(track)  # one frame later
    assert np.array_equal(later.viseme[:-1], track.viseme[1:])


def test_too_few_frames_cannot_be_calibrated(driver):
    with pytest.raises(ValueError, match="at least"):
        calibrate(np.full((30, 3), np.nan), np.arange(30) / 25, np.zeros(16000, np.float32),
                  driver)


def test_json_round_trip_and_bad_edits():
    cal = Calibration(np.array([1.5, 1.0, 0.8]), np.array([0.01, 0.02, 0.03]),
                      np.array([0.0, 0.5, 0.3]), 0.04, np.ones((561, 3)) * 0.001, 120,
                      (0.6, 0.4, float("nan")))
    back = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert np.allclose(back.gain, cal.gain) and np.allclose(back.delta, cal.delta)
    assert back.shift == cal.shift and back.frames == 120 and np.isnan(back.fit_r[2])
    with pytest.raises(ValueError):
        Calibration.from_json({"schema": "dubber.mouth-calibration/1", "gain": [1, 2]})


def _tracks(n: int, mouth: np.ndarray | None, calibration=None) -> Tracks:
    t = Track(0, 0, n - 1, np.tile([10.0, 10, 110, 110], (n, 1)), np.ones(n),
              np.full(n, 0.1), np.zeros(n), mouth, calibration)
    return Tracks(320, 240, Fraction(25), n, (t,), (Shot(0, n - 1, 0, (Window(0, n - 1, 0),)),))


@needs_speech
def test_tracks_carry_their_calibration_through_the_tracks_file(driver, tmp_path):
    x = load_audio(SPEECH / "en_radio_8s.wav")
    n = 200
    times = np.arange(n) / 25
    a = driver.analyse(x)
    mouth = _actor(driver, a, times, np.array([1.5, 1.0, 1.0]), np.zeros(3))
    tracks = calibrate_tracks(_tracks(n, mouth), x, times, driver)
    cal = track_calibration(tracks.tracks[0])
    assert cal is not None and cal.frames == n and cal.fit_r[0] > 0.9
    assert cal.delta is None  # no dub could use the adaptation (Calibration.for_dub)
    tracks.save(tmp_path / "t.json")
    loaded = Tracks.load(tmp_path / "t.json")
    assert np.allclose(track_calibration(loaded.tracks[0]).gain, cal.gain, atol=1e-4)
    assert np.allclose(loaded.tracks[0].mouth, mouth, atol=1e-4)
    # an edited calibration is kept, not fitted again
    edited = cal.to_json() | {"gain": [3.0, 1.0, 1.0]}
    again = calibrate_tracks(_tracks(n, mouth, edited), x, times, driver)
    assert track_calibration(again.tracks[0]).gain[0] == 3.0
    # a broken edit is one clear error
    broken = _tracks(n, mouth, {"schema": "dubber.mouth-calibration/1", "gain": "wide"})
    with pytest.raises(InputError, match="track 0"):
        track_calibration(broken.tracks[0])
    # JSON takes NaN: an edited gain of NaN gave the dub NaN openings wherever it speaks
    for key, bad in (("gain", [float("nan"), 1.0, 1.0]), ("rest", [0.0, float("inf"), 0.3]),
                     ("shift", float("nan"))):
        broken = _tracks(n, mouth, cal.to_json() | {key: bad})
        with pytest.raises(InputError, match=f"track 0: .*{key} is not a finite number"):
            track_calibration(broken.tracks[0])
    # an older tracks file, whose calibration carries an adaptation of a driver with other
    # inputs: it still dubs, with the same range and rest (no dub uses the adaptation)
    old = cal.to_json() | {"delta": np.ones((581, 3)).tolist()}
    stale = track_calibration(_tracks(n, mouth, old).tracks[0])
    assert stale.delta is None
    assert np.array_equal(stale.gain, track_calibration(tracks.tracks[0]).gain)
    assert np.array_equal(stale.rest, track_calibration(tracks.tracks[0]).rest)


def test_old_tracks_files_without_mouth_or_calibration_still_load(tmp_path):
    tracks = _tracks(5, None)
    data = tracks.to_json()
    assert "mouth" not in data["tracks"][0] and "calibration" not in data["tracks"][0]
    (tmp_path / "old.json").write_text(json.dumps(data))
    t = Tracks.load(tmp_path / "old.json").tracks[0]
    assert t.mouth is None and t.calibration is None and track_calibration(t) is None
    data["tracks"][0]["mouth"] = [[0.1, 0.5, 0.3]] * 4  # one short
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="mouth must have 5 entries"):
        Tracks.load(tmp_path / "bad.json")


@pytest.mark.slow
@pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared/media is not present")
def test_calibrated_on_the_first_half_of_a_real_clip_tracks_the_second(driver, tmp_path):
    """man_map_844_en: face-mesh lips and the clip's own audio, never fitted on."""
    from dubber.mouth.fit import prepare

    c = prepare(CLIPS / "man_map_844_en.mp4", driver, tmp_path)
    h = len(c.times) // 2
    zero = driver.track(c.analysis, c.times)
    r0 = np.corrcoef(zero.opening, c.truth[:, 0])[0, 1]
    cal = calibrate(c.truth[:h], c.times[:h], c.analysis, driver)
    test = driver.track(c.analysis, c.times[h:], calibration=cal)
    r1 = np.corrcoef(test.opening, c.truth[h:, 0])[0, 1]
    assert r0 > 0.3 and r1 > 0.4, (r0, r1)  # measured 0.56 and 0.70 (0.41 and 0.57 before
    # the Whisper encoder)
    # in the actor's own range (his median opening 0.079; measured 0.113)
    assert abs(np.median(test.opening) - np.median(c.truth[h:, 0])) < 0.04


@needs_speech
def test_the_dub_does_not_take_the_adaptation_fitted_on_the_actors_own_voice(driver, radio):
    """The adaptation follows the original voice; another voice gets range and rest only."""
    from types import SimpleNamespace

    from dubber.mouth.features import N_FEATURES
    from dubber.mouth.target import DubMouths

    times = np.arange(0, radio.duration, 1 / 25)
    delta = np.random.default_rng(0).normal(0, 0.02, (N_FEATURES, 3))
    cal = Calibration(np.array([2.0, 1.0, 1.0]), np.array([0.01, 0.0, 0.0]),
                      np.array([0.02, 0.4, 0.1]), delta=delta)
    mouths = DubMouths(SPEECH / "en_radio_8s.wav", times)
    mouths.driver = driver
    frames = np.arange(len(times))
    dubbed = mouths.for_track(SimpleNamespace(id=1, calibration=cal.to_json()), frames)
    plain = dataclasses.replace(cal, delta=None)
    assert np.array_equal(dubbed.params, driver.track(radio, times, calibration=plain).params)
    # on the film's own audio the adaptation is used: another mouth than without it
    own = driver.track(radio, times, calibration=cal)
    assert np.abs(own.opening - dubbed.opening).max() > 0.01


@needs_speech
def test_the_dub_is_not_shifted_by_the_lag_found_on_the_original_audio(driver, radio):
    """The lag holds the original file's muxing offset; the dub is timed to the picture."""
    from types import SimpleNamespace

    from dubber.mouth.target import DubMouths

    times = np.arange(0, radio.duration, 1 / 25)
    cal = Calibration(np.array([2.0, 1.0, 1.0]), np.array([0.01, 0.0, 0.0]),
                      np.array([0.02, 0.4, 0.1]), shift=0.12)
    mouths = DubMouths(SPEECH / "en_radio_8s.wav", times)
    mouths.driver = driver
    frames = np.arange(len(times))
    lagged = mouths.for_track(SimpleNamespace(id=1, calibration=cal.to_json()), frames)
    unlagged = mouths.for_track(
        SimpleNamespace(id=1, calibration=dataclasses.replace(cal, shift=0.0).to_json()), frames)
    assert np.array_equal(lagged.params, unlagged.params)
    assert np.array_equal(lagged.viseme, unlagged.viseme)
    # on the film's own audio the lag is applied: the same actor, read 3 frames later
    own = driver.track(radio, times, calibration=cal)
    later = driver.track(radio, times + 0.12, calibration=cal.for_dub())
    assert not np.array_equal(own.params, unlagged.params)
    assert np.allclose(own.params, later.params)
