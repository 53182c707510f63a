"""The timing rules: phones and pauses -> viseme timeline (no audio, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from dubber.mouth import rules
from dubber.mouth.phones import Phone


def seq(*items: tuple[str, float]) -> list[Phone]:
    """Consecutive phones from (name, duration in seconds)."""
    out, t = [], 0.0
    for name, d in items:
        out.append(Phone(name, t, t + d))
        t += d
    return out


def shape_at(shapes, t):
    return next(s for s in shapes if s.start <= t < s.end)


def test_every_bilabial_is_closed_on_a_frame_at_any_frame_rate():
    # "a bob made me pop": short B, P and M between open vowels.
    phones = seq(("SIL", 0.2), ("AH", 0.1), ("B", 0.04), ("AA", 0.12), ("B", 0.03),
                 ("M", 0.05), ("EY", 0.15), ("D", 0.05), ("M", 0.06), ("IY", 0.1), ("P", 0.04),
                 ("AA", 0.1), ("P", 0.05), ("SIL", 0.4))
    shapes = rules.timeline(phones, [(0.0, 0.2), (1.29, 1.69)], 1.69)
    bilabials = [p for p in phones if p.phone in "PBM"]
    rng = np.random.default_rng(0)
    vfr = np.cumsum(rng.uniform(0.02, 0.06, 60))
    for times in (np.arange(0, 1.69, 1 / 24), np.arange(0, 1.69, 1 / 30000 * 1001),
                  np.arange(0, 1.69, 1 / 60), vfr[vfr < 1.69]):
        vis, closed, _ = rules.sample(shapes, times)
        for p in bilabials:
            # the closure lies before the burst (P/B) or over the phone (M)
            near = (times >= p.start - rules.CLOSURE_MAX - 0.001) & (times < p.end)
            assert np.any(near & closed & (vis == 0)), (p, times[near], vis[near])


def test_plosive_closes_before_its_burst_and_opens_into_the_vowel():
    phones = seq(("AA", 0.2), ("P", 0.08), ("AA", 0.2))
    shapes = rules.timeline(phones, [], 0.48)
    closure = next(s for s in shapes if s.closure)
    assert closure.start < 0.2 - 0.03  # taken from the vowel before the burst
    assert closure.end <= 0.2 + rules.BURST_CLOSED + 1e-9
    assert shape_at(shapes, 0.27).viseme in "CD"  # the burst shows the next vowel


def test_no_shape_shorter_than_the_minimum():
    rng = np.random.default_rng(1)
    names = ["AA", "T", "IY", "S", "UW", "K", "AE", "N", "L", "OW", "F", "ER", "D"]
    phones = seq(*[(names[i % len(names)], float(d))
                   for i, d in enumerate(rng.uniform(0.01, 0.05, 80))])
    end = phones[-1].end
    shapes = rules.timeline(phones, [], end)
    assert shapes[0].start == 0 and abs(shapes[-1].end - end) < 1e-9
    for a, b in zip(shapes, shapes[1:]):
        assert abs(a.end - b.start) < 1e-9  # consecutive, no gaps or overlaps
    inner = shapes[1:-1]  # the first and last may be cut by the audio's ends
    assert min(s.length for s in inner) >= rules.MIN_SHAPE - 1e-9


def test_silence_shuts_the_mouth_within_150_ms_and_short_gaps_hold():
    phones = seq(("AA", 0.3), ("SIL", 0.06), ("AE", 0.3), ("SIL", 1.2), ("OW", 0.3))
    shapes = rules.timeline(phones, [(0.66, 1.86)], 2.16)
    for t in (0.305, 0.33, 0.355):  # a 60 ms gap between words: no rest, no relaxing
        assert shape_at(shapes, t).viseme in "CD" and not shape_at(shapes, t).relaxed
    for t in np.arange(0.66 + rules.CLOSE_AFTER, 1.86, 0.01):
        assert shape_at(shapes, t).viseme == "X", t
    relaxed = shape_at(shapes, 0.7)
    assert relaxed.relaxed and relaxed.viseme == "B"  # AE (C) relaxes to B first


def test_a_silent_gap_shuts_sooner_than_a_pause_with_breath_in_it():
    phones = seq(("AA", 0.3), ("SIL", 0.6), ("AA", 0.3))
    breath = rules.timeline(phones, [(0.3, 0.9)], 1.2, quiet=[False])
    silent = rules.timeline(phones, [(0.3, 0.9)], 1.2, quiet=[True])
    assert all(s.viseme != "X" for s in breath if 0.3 <= s.start < 0.9)
    assert shape_at(breath, 0.6).relaxed  # the mouth relaxes, the regressor says how much
    for t in np.arange(0.3 + rules.CLOSE_AFTER, 0.895, 0.01):
        assert shape_at(silent, t).viseme == "X", t


def test_a_pause_shorter_than_a_silence_relaxes_without_shutting():
    phones = seq(("AA", 0.3), ("SIL", 0.2), ("AA", 0.3))
    shapes = rules.timeline(phones, [(0.3, 0.5)], 0.8)
    assert all(s.viseme != "X" for s in shapes if s.start >= 0.3 and s.end <= 0.5)
    assert shape_at(shapes, 0.4).viseme == "C"  # D relaxed to C


def test_vowels_are_anticipated_and_diphthongs_change_shape():
    phones = seq(("SIL", 0.3), ("S", 0.1), ("AA", 0.2), ("OW", 0.25), ("SIL", 0.3))
    shapes = rules.timeline(phones, [(0.0, 0.3), (0.85, 1.15)], 1.15)
    vowel = shape_at(shapes, 0.45)
    assert vowel.viseme == "D" and 0.4 - rules.ANTICIPATE - 1e-9 <= vowel.start < 0.4
    assert shape_at(shapes, 0.65).viseme == "E" and shape_at(shapes, 0.8).viseme == "F"


@pytest.mark.parametrize("phone,after,expected", [("T", "UW", "F"), ("T", "IY", "B"),
                                                   ("F", "AA", "G"), ("M", "AA", "A")])
def test_consonants_take_the_shape_of_the_vowel_they_lead_into(phone, after, expected):
    phones = seq(("SIL", 0.3), (phone, 0.12), (after, 0.2), ("SIL", 0.3))
    shapes = rules.timeline(phones, [], 0.92)
    assert shape_at(shapes, 0.33).viseme == expected


def test_a_bilabial_heard_inside_silence_is_noise_but_one_starting_speech_closes():
    phones = seq(("SIL", 0.5), ("M", 0.08), ("SIL", 0.6), ("B", 0.05), ("AA", 0.3))
    shapes = rules.timeline(phones, [(0.0, 1.18)], 1.53)
    closures = [s for s in shapes if s.closure]
    assert len(closures) == 1 and closures[0].end > 1.18  # the B that starts the speech
    assert all(s.viseme == "X" for s in shapes if s.end <= 1.1 and s.start >= 0.15)


def test_a_short_pause_that_starts_the_audio_relaxes_into_the_speech_a_long_one_shuts():
    phones = seq(("SIL", 0.25), ("AA", 0.3), ("SIL", 0.3))
    short = rules.timeline(phones, [(0.0, 0.25)], 0.85)
    first = shape_at(short, 0.05)
    assert first.viseme == "C" and first.relaxed  # AA (D) relaxed: a scene cut mid-breath
    phones = seq(("SIL", 1.2), ("AA", 0.3), ("SIL", 0.3))
    long = rules.timeline(phones, [(0.0, 1.2)], 1.8)
    assert all(shape_at(long, t).viseme == "X" for t in np.arange(0.0, 1.19, 0.01))


def test_a_short_pause_that_starts_the_audio_before_a_bilabial_is_shut():
    # a breath the recogniser heard as a vowel, then speech that opens on an M: the lips
    # are together before it, so the pause is shut, not left with the breath's shape
    phones = seq(("SIL", 0.1), ("AH", 0.12), ("SIL", 0.1), ("M", 0.08), ("AA", 0.3))
    shapes = rules.timeline(phones, [(0.0, 0.32)], 0.7)
    assert all(shape_at(shapes, t).viseme in ("X", "A") for t in np.arange(0.0, 0.32, 0.01))
    assert any(s.closure and s.end > 0.32 for s in shapes)  # the M still closes


def test_no_sound_inside_a_breathing_pause_shuts_within_150_ms():
    # a 0.8 s pause (sound in it: too short to shut by itself) holding 0.5 s of digital
    # silence, and 0.4 s of it at the very start of the audio
    phones = seq(("SIL", 0.5), ("AA", 0.3), ("SIL", 0.8), ("AA", 0.3))
    pauses = [(0.0, 0.5), (0.8, 1.6)]
    plain = rules.timeline(phones, pauses, 1.9)
    assert shape_at(plain, 1.3).viseme != "X" and shape_at(plain, 0.1).viseme != "X"
    hushed = rules.timeline(phones, pauses, 1.9, hushed=[(0.0, 0.4), (1.0, 1.5)])
    for t in list(np.arange(0.0, 0.395, 0.01)) + list(np.arange(1.15, 1.495, 0.01)):
        assert shape_at(hushed, t).viseme == "X", t
    assert shape_at(hushed, 0.9).relaxed and shape_at(hushed, 1.55).relaxed
    too_short = rules.timeline(phones, pauses, 1.9, hushed=[(1.0, 1.0 + 0.3)])
    assert shape_at(too_short, 1.2).viseme != "X"
