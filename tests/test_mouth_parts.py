"""The driver's parts on their own: phones, acoustics, features, the analysis pass's
mouth parameters and calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dubber.media.audio import load_audio
from dubber.mouth import acoustics as ac
from dubber.mouth.features import (N_BASE, N_FEATURES, N_POSTERIORS, SILENCE_PHONE,
                                   frame_features, frame_projection, silence_steps,
                                   step_features)
from dubber.mouth.whisper import N_WHISPER
from dubber.mouth.phones import PHONES, VOWELS, PhoneRecogniser
from tests.helpers import CLIPS, SPEECH

needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/media is not present")


@pytest.fixture(scope="module")
def speech():
    """en_radio_8s, then 1 s of digital silence."""
    x = load_audio(SPEECH / "en_radio_8s.wav")
    return np.concatenate([x, np.zeros(16000, np.float32)])


@needs_speech
def test_phones_cover_the_speech_and_call_silence_silence(speech):
    phones = PhoneRecogniser().phones(speech)
    assert all(p.phone in PHONES for p in phones)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(phones, phones[1:]))
    talk = [p for p in phones if p.end <= 8.0]
    assert len(talk) > 40 and sum(p.phone in VOWELS for p in talk) > 15
    assert [p.phone for p in phones if p.start >= 8.1] in ([], ["SIL"])


@needs_speech
def test_acoustics_are_per_voice_and_restore_torch_threads(speech):
    torch.set_num_threads(2)
    a = ac.acoustics(speech)
    assert torch.get_num_threads() == 2  # Silero sets 1 at import and when it runs
    n = ac.n_steps(len(speech))
    assert len(a) == n and all(len(getattr(a, f)) == n for f in
                               ("loudness", "vad", "f1", "f2", "voiced", "pitch", "level"))
    talk, quiet = slice(0, 790), slice(820, n)
    assert a.vad[talk].mean() > 0.6 and a.vad[quiet].max() < 0.2
    assert a.level[quiet].max() == ac.LOUDNESS_FLOOR_DB
    assert a.voiced[talk].mean() > 0.3 and a.voiced[quiet].max() == 0
    voiced = a.voiced > 0
    assert abs(np.mean(a.f1[voiced])) < 0.5 and 0.5 < np.std(a.f1[voiced]) < 1.5  # z-scores
    assert 900 < a.f2_median < 2500  # Hz: the voice's vocal tract (the posteriors' warp)
    assert np.isnan(ac.acoustics(np.zeros(16000, np.float32)).f2_median)
    # the same voice twice as loud has the same normalised features
    b = ac.acoustics(speech * 0.5)
    heard = a.level > -60  # (the absolute floor clips the quietest steps)
    assert np.allclose(a.loudness[heard], b.loudness[heard], atol=0.5)
    assert np.allclose(a.f1[heard], b.f1[heard], atol=0.05)


@needs_speech
def test_silero_batched_gives_silero_window_by_window(speech):
    # the windows' front end at once and the recurrent cell as one LSTM: Silero's own loop
    # (audio_forward) is the reference, on speech, the silence after it, and a ragged end
    model = ac._silero()
    for x in (speech, speech[:16000 * 3 + 123]):
        pad = (-len(x)) % ac.VAD_WINDOW
        padded = np.pad(x, (0, pad + ac.VAD_WINDOW))
        with torch.inference_mode():
            model.reset_states()
            want = model.audio_forward(torch.from_numpy(padded), 16000)[0].numpy()
            got = ac._silero_windows(model, padded)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4
        assert want.max() > 0.9 and want.min() < 0.1  # speech and silence both in it
    steps = ac.n_steps(len(speech))
    vad = ac.speech_probability(speech, steps)
    assert vad.shape == (steps,) and vad[:700].mean() > 0.6 and vad[-80:].max() < 0.1


@needs_speech
def test_features_read_at_a_frame_time_are_those_of_its_steps(speech):
    a = ac.acoustics(speech[:32000])
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(N_POSTERIORS), len(a))
    enc = rng.normal(size=(len(a) + 1, N_WHISPER))  # a step long: cut
    steps = step_features(post, a, np.zeros(len(a), np.int16), enc)
    assert steps.shape == (len(a), N_BASE)
    e = N_BASE - N_WHISPER
    assert np.array_equal(steps[:, e:], enc[:-1].astype(np.float32))
    short = step_features(post, a, np.zeros(len(a), np.int16), enc[:-2])  # rounding: padded
    assert np.array_equal(short[-1, e:], short[-2, e:])
    x = frame_features(steps, np.array([0.5, 0.5, 1.0, 30.0]))
    assert x.shape == (4, N_FEATURES) and np.array_equal(x[0], x[1])
    assert not np.array_equal(x[0], x[2])
    # far outside the audio: the features of silence (all on SIL, loudness floor)
    assert x[3, SILENCE_PHONE] == 1.0 and x[3, :N_POSTERIORS].sum() == 1.0
    assert x[3, N_POSTERIORS] == -4.0
    with pytest.raises(ValueError, match="posteriors"):
        step_features(post[:, :40], a, np.zeros(len(a), np.int16), enc)
    with pytest.raises(ValueError, match="whisper"):
        step_features(post, a, np.zeros(len(a), np.int16), enc[:-20])
    with pytest.raises(ValueError, match="whisper"):
        step_features(post, a, np.zeros(len(a), np.int16), enc[:, :100])


def test_the_silence_row_fills_frames_outside_the_audio():
    steps = np.random.default_rng(0).normal(size=(300, N_BASE)).astype(np.float32)
    heard = np.full(N_WHISPER, -3.0, np.float32)
    x = frame_features(steps, np.array([-10.0, 1.5]), silence=silence_steps(heard))
    y = frame_features(steps, np.array([-10.0, 1.5]))
    assert np.allclose(x[1], y[1])  # inside: the steps'
    block = x[0, :N_BASE]  # the first context offset, far before the audio
    e = N_BASE - N_WHISPER
    assert np.allclose(block[e:], -3.0) and np.allclose(y[0, e:N_BASE], 0)
    assert block[SILENCE_PHONE] == 1.0 and block[N_POSTERIORS] == -4.0


def test_features_read_in_pieces_are_those_read_at_once():
    # a film's frames are read a block at a time: each block reads only the steps its
    # windows reach, and must see exactly what one pass over all the frames sees
    rng = np.random.default_rng(1)
    steps = rng.normal(size=(3000, N_BASE)).astype(np.float32)  # 30 s of 10 ms steps
    times = np.concatenate([np.arange(-1.0, 31.0, 0.04), [15.0, 0.0, 29.99]])
    whole = frame_features(steps, times)
    for piece in (times[:10], times[-3:], times[200:260], times[::-97], times[790:]):
        part = frame_features(steps, piece)
        at = [int(np.flatnonzero(times == t)[0]) for t in piece]
        assert np.allclose(part, whole[at], rtol=1e-6, atol=1e-6)
    assert frame_features(steps, np.zeros(0)).shape == (0, N_FEATURES)


@needs_speech
def test_a_linear_map_of_the_features_is_read_without_building_them(speech):
    # the driver's linear regressor reads frame_projection: the same numbers as its map
    # applied to the features, inside the audio and outside it
    rng = np.random.default_rng(2)
    steps = rng.normal(size=(3000, N_BASE)).astype(np.float32)
    silence = silence_steps(np.full(N_WHISPER, 0.5, np.float32))
    times = np.concatenate([np.arange(-1.0, 31.0, 0.04), [15.0, 0.0, 29.99]])
    w = rng.normal(size=(N_FEATURES, 3))
    want = frame_features(steps, times, silence=silence).astype(np.float64) @ w
    got = frame_projection(steps, times, w, silence=silence)
    assert got.shape == (len(times), 3)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    assert not np.allclose(frame_projection(steps, times + 0.1, w, silence=silence), want,
                           atol=1e-3 * np.abs(want).max())
    with pytest.raises(ValueError, match="rows"):
        frame_projection(steps, times, w[1:])
    # the shipped driver: the same z-scores as its network on the features, with an
    # actor's adaptation too
    from dubber.mouth.driver import MouthDriver

    driver = MouthDriver(workers=0)
    a = driver.analyse(speech[: 3 * 16000])
    t = np.arange(-0.2, 3.4, 0.04)
    reg = driver.regressor
    x = torch.from_numpy(driver.features(a, t))
    with torch.inference_mode():
        xn = (x - reg.in_mean) / reg.in_std
        plain = reg.net(xn).numpy()
    delta = rng.normal(0, 1e-3, (N_FEATURES, 3)).astype(np.float32)
    assert np.allclose(driver.standardised(a, t), plain, atol=1e-4)
    assert np.allclose(driver.standardised(a, t, delta), plain + xn.numpy() @ delta, atol=1e-4)
    driver.close()
    # a regressor with a hidden layer is not linear: it reads the features themselves
    from dubber.models.dims import MouthDriverDims
    from dubber.mouth.regressor import MouthRegressor

    torch.manual_seed(0)
    deep = MouthRegressor(MouthDriverDims(hidden=8))
    with torch.no_grad():
        deep.in_mean.copy_(reg.in_mean)
        deep.in_std.copy_(reg.in_std)
        curved = deep.net(xn).numpy()
    other = MouthDriver(regressor=deep, workers=0)
    assert np.allclose(other.standardised(a, t), curved, atol=1e-5)
    assert np.allclose(other.standardised(a, t, delta), curved + xn.numpy() @ delta, atol=1e-5)


@pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared/media is not present")
def test_the_analysis_pass_measures_mouths_and_calibrates_the_speaker(tmp_path):
    from dubber.config import load_config
    from dubber.faces.analyze import analyze
    from dubber.mouth.calibrate import track_calibration

    tracks = analyze(CLIPS / "man_map_844_en.mp4", load_config("fast"), cache_dir=tmp_path)
    speaker = tracks.track(tracks.shots[0].selected_track)
    ok = np.all(np.isfinite(speaker.mouth), 1)
    assert ok.mean() > 0.9
    assert np.allclose(speaker.mouth[ok, 0], speaker.aperture[ok], atol=0.03)
    assert 0.4 < np.median(speaker.mouth[ok, 1]) < 0.8  # width in eye distances
    cal = track_calibration(speaker)
    assert cal is not None and cal.frames > 100 and cal.fit_r[0] > 0.3
    assert abs(cal.rest[0] - np.percentile(speaker.mouth[ok, 0], 5)) < 1e-3


@needs_speech
def test_the_recogniser_never_loses_its_search():
    """A lost search shows as one phone held for seconds (narrow beams did this on Chinese
    news: 8 s as 4 phones)."""
    rec = PhoneRecogniser()
    for name in ("zh_news_8s.wav", "en_jfk.flac", "hi_news_22s.wav"):
        x = load_audio(SPEECH / name)
        phones = rec.phones(x)
        longest = max(p.end - p.start for p in phones if p.phone != "SIL")
        assert longest < 1.0, (name, longest)
        assert len(phones) > 5 * len(x) / 16000, name  # at least 5 phones a second


@needs_speech
def test_worker_processes_give_the_same_phones_and_a_dead_worker_is_replaced_here():
    """Two recogniser workers decode the pieces of long audio while this process measures
    the acoustics; the phones are those of the in-process decoder, also when a worker dies
    mid-job (its pieces are then decoded here). Short audio starts no worker."""
    import os
    import signal

    x = load_audio(SPEECH / "hi_news_22s.wav")
    long = np.concatenate([x, x])  # 44 s: six pieces, enough to start the workers
    here = PhoneRecogniser(workers=0).phones(long)
    rec = PhoneRecogniser(workers=2)
    try:
        rec.phones(x)
        assert rec.worker_pids() == []  # 22 s: decoded here
        pending = rec.submit(long)
        a = ac.acoustics(x)  # meanwhile
        assert len(a) == ac.n_steps(len(x))
        assert pending.result() == here
        pids = rec.worker_pids()
        assert len(pids) == 2 and os.getpid() not in pids
        os.kill(pids[0], signal.SIGKILL)
        assert rec.phones(long) == here
        assert len(rec.worker_pids()) == 1
        assert rec.phones(x[:16000]) is not None  # short audio uses the running worker
    finally:
        rec.close()
    assert rec.worker_pids() == []


@needs_speech
def test_the_recogniser_listens_only_where_someone_may_speak(speech):
    """Speech, 3 s of room-quiet silence, speech: the long pause is not decoded and comes
    back as one silence; the phones still cover the whole signal, end to end."""
    from dubber.mouth.driver import listen_regions

    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(48000) * 1e-4).astype(np.float32)
    x = np.concatenate([speech[:128000], quiet, speech[:128000]])
    regions = listen_regions(*ac.voice_activity(x))
    heard = sum(b - a for a, b in regions)
    assert 0.6 * len(x) < heard < len(x) - 32000  # at least 2 s of the pause is skipped
    phones = PhoneRecogniser().submit(x, regions).result()
    assert phones[0].start == 0 and abs(phones[-1].end - len(x) / 16000) < 1e-6
    assert all(abs(a.end - b.start) < 1e-6 for a, b in zip(phones, phones[1:]))
    pause = [p for p in phones if p.end > 8.5 and p.start < 10.5]
    assert [p.phone for p in pause] == ["SIL"]
    assert sum(p.phone in VOWELS for p in phones if p.start > 11.0) > 15


@pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared/media is not present")
def test_the_speakers_profile_ratio_sees_the_head_turn(tmp_path):
    """The bench's frontal-frames truth: profile_turn_224_en turns from frontal to profile
    at its end; kim_1080p30_en faces the camera throughout."""
    from dubber.mouth.truth import FRONTAL, speaker_profile

    turn = speaker_profile(CLIPS / "profile_turn_224_en.mp4", tmp_path)
    assert len(turn) == 128 and np.isfinite(turn).mean() > 0.9
    assert np.nanmedian(turn[:40]) < 0.7 and np.nanmedian(turn[-16:]) > 0.85
    assert 0.1 < np.mean(turn <= FRONTAL) < 0.6
    assert np.array_equal(speaker_profile(CLIPS / "profile_turn_224_en.mp4", tmp_path), turn,
                          equal_nan=True)  # from the cache
    kim = speaker_profile(CLIPS / "kim_1080p30_en.mp4", tmp_path)
    assert np.mean(kim <= FRONTAL) > 0.95
