"""bench_lipsync's measurement: the speaker's lips are found again in the output by overlap."""

import types

import numpy as np

from dubber.bench.lipsync import _aperture_series, _corr, _fill
from dubber.faces.tracks_file import Track


def _track(tid, first, box, aperture):
    n = len(aperture)
    return Track(tid, first, first + n - 1, np.tile(np.asarray(box, float), (n, 1)),
                 np.ones(n), np.asarray(aperture, float), np.zeros(n))


def test_aperture_follows_the_overlapping_track_and_gaps_are_filled():
    speaker = _track(3, 0, (100, 100, 200, 200), [0.1, np.nan, 0.3, 0.4])
    other = _track(7, 0, (400, 100, 500, 200), [0.9, 0.9, 0.9, 0.9])
    tracks = types.SimpleNamespace(tracks=[other, speaker])
    frames = np.arange(4)
    boxes = {f: (105.0, 102.0, 205.0, 198.0) for f in frames}  # the input's box, slightly off
    a = _aperture_series(tracks, frames, boxes)
    assert a[0] == 0.1 and np.isnan(a[1]) and a[3] == 0.4
    assert np.allclose(_fill(a), [0.1, 0.2, 0.3, 0.4])
    # No face where the speaker was: nothing measured.
    far = {f: (700.0, 700.0, 800.0, 800.0) for f in frames}
    assert np.isnan(_aperture_series(tracks, frames, far)).all()


def test_correlation_finds_a_lagged_copy():
    rng = np.random.default_rng(0)
    env = rng.normal(size=200)
    lips = np.roll(env, 2) + 0.1 * rng.normal(size=200)
    assert _corr(lips, env, 2) > 0.9
    assert _corr(lips, env, 0) < 0.3
