"""The driver on real speech: silences shut the mouth, bilabials close it, other
languages are heard, any frame timeline works, the weights are checked."""

from __future__ import annotations

import numpy as np
import pytest

from dubber.errors import WeightsError
from dubber.media.audio import load_audio
from dubber.mouth import driver as drv
from dubber.mouth import rules
from dubber.mouth.driver import MouthDriver
from dubber.mouth.phones import BILABIALS
from dubber.mouth.track import VISEMES
from tests.helpers import SPEECH, needs_speech

X, A = VISEMES.index("X"), VISEMES.index("A")


@pytest.fixture(scope="module")
def speech_then_silence(driver):
    """en_radio_8s followed by 1.5 s of digital silence, analysed once."""
    x = load_audio(SPEECH / "en_radio_8s.wav")
    end = len(x) / 16000
    x = np.concatenate([x, np.zeros(24000, np.float32)])
    return driver.analyse(x), end


@needs_speech
def test_silence_in_the_dub_shuts_the_mouth_within_150_ms(driver, speech_then_silence):
    a, end = speech_then_silence
    for fps in (23.976, 25, 30, 60):
        times = np.arange(0, a.duration, 1 / fps)
        track = driver.track(a, times)
        late = times >= end + 0.15
        assert np.all(track.viseme[late] == X)
        assert np.allclose(track.params[late], driver.rest)
        assert not track.speech[late].any()
        assert track.opening[late].max() <= track.opening[times < end].min() + 1e-6
    # ... and the speech before it moves the mouth through several shapes
    speaking = driver.track(a, np.arange(0, end, 0.04))
    assert speaking.speech.mean() > 0.6
    assert len(set(speaking.labels())) >= 5
    assert speaking.opening.std() > 0.01


@needs_speech
def test_digital_silence_between_lines_shuts_the_mouth_though_a_breath_follows(driver):
    """A dub stem: a line, 0.5 s of digital silence, a breath (room noise), the next line.
    The pause is too short and not quiet enough as a whole to shut; its silence shuts."""
    x = load_audio(SPEECH / "en_radio_8s.wav")
    cut = int(2.0 * 16000)
    breath = np.random.default_rng(0).normal(0, 0.01, 4800).astype(np.float32)  # -40 dBFS
    x = np.concatenate([x[:cut], np.zeros(8000, np.float32), breath, x[cut:]])
    a = driver.analyse(x)
    pause = next((p, q) for p, q in drv.pauses(a.speech) if p <= 2.3 <= q)
    assert pause[1] - pause[0] < rules.SHUT_PAUSE  # the old rule would only relax it
    times = np.arange(0, a.duration, 1 / 25)
    track = driver.track(a, times)
    hushed = (times >= pause[0] + 0.16) & (times < 2.45)
    assert hushed.sum() >= 3
    assert np.all(track.viseme[hushed] == X)
    assert np.allclose(track.params[hushed], driver.rest)


@needs_speech
def test_a_long_timeline_read_in_blocks_gives_the_track_of_one_pass(driver, speech_then_silence,
                                                                   monkeypatch):
    a, _ = speech_then_silence
    times = np.arange(0, a.duration, 1 / 25)
    whole = driver.track(a, times)
    monkeypatch.setattr(drv, "FRAME_BLOCK", 7)  # a film's frames, a block at a time
    blocks = driver.track(a, times)
    assert np.array_equal(blocks.viseme, whole.viseme)
    assert np.allclose(blocks.params, whole.params, atol=1e-5)
    assert whole.opening.std() > 0.01


@needs_speech
def test_every_bilabial_found_closes_the_lips(driver, speech_then_silence):
    a, end = speech_then_silence
    bil = [p for p in a.phones if p.phone in BILABIALS]
    assert bil, "the recogniser found no P/B/M in English speech"
    times = np.arange(0, a.duration, 1 / 29.97)
    track = driver.track(a, times)
    for p in bil:
        near = (times >= p.start - 0.13) & (times < p.end)
        shut = near & (track.viseme == A) & (track.opening <= driver.rest[0] + 1e-6)
        assert shut.any(), p


@needs_speech
def test_a_closure_shuts_the_lips_where_they_meet_not_over_its_whole_span(driver,
                                                                         speech_then_silence):
    a, _ = speech_then_silence
    times = np.arange(0, a.duration, 0.01)
    track = driver.track(a, times)
    rest = driver.rest[0]
    closures = [s for s in a.shapes if s.closure or s.viseme == "A"]
    assert len([s for s in closures if s.length >= 0.1]) >= 2
    for s in closures:
        meet = (times >= s.start) & (times < s.start + 0.04)
        assert np.all(track.opening[meet] <= rest + 1e-6), s  # shut as the lips meet
    later = np.zeros(len(times), bool)
    for s in closures:
        later |= (times >= s.start + 0.05) & (times < s.end)
    # after that the regressor's opening, shown as a consonant (B): A is only ever shut
    assert np.mean(track.opening[later] > rest + 1e-6) > 0.5
    assert np.all(track.viseme[later] != A)
    assert np.all(track.opening[track.viseme == A] <= rest + 1e-6)


@needs_speech
@pytest.mark.parametrize("name", ["hi_news_22s.wav", "zh_news_8s.wav", "zh_read_4s.wav"])
def test_hindi_and_chinese_speech_is_found(driver, name):
    a = driver.analyse(load_audio(SPEECH / name))
    times = np.arange(0, a.duration, 1 / 25)
    track = driver.track(a, times)
    step = np.clip(np.rint(times * 100).astype(int), 0, len(a.acoustics) - 1)
    voiced = a.acoustics.voiced[step] > 0
    assert voiced.sum() > 50
    assert track.speech[voiced].mean() >= 0.9
    assert np.all(np.isfinite(track.params)) and (track.confidence >= 0).all()
    assert len(set(track.labels()) - {"X"}) >= 3


@needs_speech
def test_each_frame_is_read_at_its_own_timestamp(driver, speech_then_silence):
    """VFR: a frame's entry depends on its time only, not on its neighbours."""
    a, _ = speech_then_silence
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.01, 0.07, 150))
    whole = driver.track(a, times)
    part = driver.track(a, times[40:60])
    assert np.array_equal(whole.viseme[40:60], part.viseme)
    assert np.allclose(whole.params[40:60], part.params)
    assert np.array_equal(whole.times, times)
    # outside the audio: silent, at rest
    out = driver.track(a, np.array([-1.0, a.duration + 0.5]))
    assert out.labels() == ["X", "X"] and not out.speech.any()


def test_silence_and_very_short_audio_give_a_mouth_at_rest(driver):
    for n in (400, 16000):
        track = driver.track(np.zeros(n, np.float32), np.arange(0, n / 16000, 0.02))
        assert set(track.labels()) <= {"X"} and not track.speech.any()
        assert np.allclose(track.params, driver.rest)


def test_missing_or_corrupt_weights_are_refused(tmp_path):
    from dubber.models.registry import REPO_WEIGHTS_DIR

    manifest = (REPO_WEIGHTS_DIR / "manifest.yaml").read_text()
    (tmp_path / "manifest.yaml").write_text(manifest)
    with pytest.raises(WeightsError, match="missing"):
        MouthDriver(tmp_path)
    (tmp_path / "mouth-driver.safetensors").write_bytes(b"0" * 100)
    with pytest.raises(WeightsError, match="sha256"):
        MouthDriver(tmp_path)
