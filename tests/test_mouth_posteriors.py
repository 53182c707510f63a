"""The driver's phone posteriors from PocketSphinx's own acoustic model (no download)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dubber.errors import WeightsError
from dubber.media.audio import load_audio
from dubber.mouth.features import N_POSTERIORS, SILENCE_PHONE
from dubber.mouth.phones import BILABIALS, VOWELS, PhoneRecogniser
from dubber.mouth.posteriors import (F2_REFERENCE, WARP_RANGE, PhoneModel, mfcc, model_folder,
                                     phone_model, sphinx_features, voice_warp)
from tests.helpers import CLIPS, SPEECH

needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/media is not present")


@pytest.fixture(scope="module")
def radio():
    """en_radio_8s, 1 s of digital silence, its speech steps and the decoded phone per step."""
    x = np.concatenate([load_audio(SPEECH / "en_radio_8s.wav"), np.zeros(16000, np.float32)])
    steps = len(x) // 160 + 1
    speech = np.zeros(steps, bool)
    speech[:790] = True
    names = np.array(["SIL"] * steps, object)
    for p in PhoneRecogniser(0).phones(x):
        names[int(round(p.start * 100)):int(round(p.end * 100))] = p.phone
    return x, speech, names


def test_the_wheel_model_is_the_layout_the_regressor_reads():
    m = phone_model()
    assert len(m.phones) == N_POSTERIORS and m.phones[SILENCE_PHONE] == "SIL"
    assert {"AA", "IY", "UW", "B", "M", "P", "F", "V"} <= set(m.phones)


@needs_speech
def test_posteriors_follow_the_phones_the_recogniser_hears(radio):
    x, speech, names = radio
    m = phone_model()
    p = m.posteriors(x, speech)
    assert p.shape == (len(names), N_POSTERIORS) and np.allclose(p.sum(1), 1, atol=1e-4)
    best = np.array(m.phones, object)[p.argmax(1)]
    talk = names != "SIL"
    # single frames against a decoder with triphones and a phone language model: about
    # 0.39 agree; the most common phone alone would be 0.08
    _, counts = np.unique(names[talk], return_counts=True)
    assert (best[talk] == names[talk]).mean() > 3 * counts.max() / counts.sum()
    # the lips' phones: where P/B/M are heard, their posterior mass is many times a vowel's
    lips = [m.phones.index(b) for b in sorted(BILABIALS)]
    on_b = p[np.isin(names, list(BILABIALS))][:, lips].sum(1).mean()
    on_v = p[np.isin(names, list(VOWELS))][:, lips].sum(1).mean()
    assert on_b > 4 * on_v
    # digital silence is silence (the dither), not a random phone
    assert (p[820:].argmax(1) == SILENCE_PHONE).all()


@needs_speech
def test_posteriors_are_per_voice_and_repeatable(radio):
    x, speech, _ = radio
    m = phone_model()
    p = m.posteriors(x, speech)
    assert np.array_equal(p, m.posteriors(x, speech))  # the dither has a fixed seed
    quieter = m.posteriors(x * 0.5, speech)  # the cepstral mean takes the level away
    assert np.abs(p - quieter)[speech].mean() < 1e-3
    every = m.posteriors(x, speech, stride=1)  # the shipped grid holds every second step
    assert np.allclose(every[::2], p[::2], atol=1e-5)
    assert np.array_equal(p[1::2], p[::2][: len(p[1::2])])


def test_short_and_empty_audio_give_one_row_per_step():
    m = phone_model()
    assert m.posteriors(np.zeros(0, np.float32)).shape == (1, N_POSTERIORS)
    assert m.posteriors(np.zeros(1000, np.float32)).shape == (7, N_POSTERIORS)


def test_a_broken_model_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "en-us"
    shutil.copytree(model_folder(), folder)
    (folder / "means").write_bytes(b"s3\nendhdr\n")
    with pytest.raises(WeightsError, match="acoustic model"):
        PhoneModel(folder)


def test_the_warp_follows_the_voices_median_f2_within_its_range():
    assert voice_warp(float("nan")) == 1.0 and voice_warp(0.0) == 1.0
    assert voice_warp(F2_REFERENCE) == 1.0
    assert voice_warp(1.1 * F2_REFERENCE) == pytest.approx(1.1)
    assert voice_warp(3000.0) == WARP_RANGE[1] and voice_warp(900.0) == WARP_RANGE[0]


@pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared/media is not present")
def test_a_high_voice_warped_by_its_f2_fits_the_model_better():
    """Vocal tract length normalisation: katie's formants sit high (median F2 ~1850 Hz); her
    filterbank stretched by the warp, the en-us model explains her frames better."""
    from dubber.mouth.acoustics import acoustics
    from dubber.mouth.driver import speech_steps

    x = load_audio(CLIPS / "katie_512_mpeg4_en.mp4")
    ac = acoustics(x)
    speech = speech_steps(ac)
    warp = voice_warp(ac.f2_median)
    assert warp > 1.1
    m = phone_model()

    def fit(w):
        feats = sphinx_features(mfcc(x, w), speech)[speech]
        return float(m.log_likelihoods(feats).max(1).mean())

    assert fit(warp) > fit(1.0) + 0.5
    assert not np.allclose(m.posteriors(x, speech, warp=warp), m.posteriors(x, speech))
