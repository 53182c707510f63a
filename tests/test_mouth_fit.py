"""Fitting the driver's regressor (``python -m dubber.mouth.fit``): the audio offsets it
removes, what it learns, the learning curve, and the command's bad inputs.

The videos here are real speech with synthetic lips: a fixed linear function of the
driver's own features (so the relation is learnable and known), with noise."""

from __future__ import annotations

import numpy as np
import pytest

from dubber.media.audio import load_audio
from dubber.mouth.fit import (Clip, _corr, cross_fit, fit_regressor, learning_curve, main,
                               measured_offsets)
from tests.helpers import MEDIA, SPEECH, ffmpeg, needs_speech

pytestmark = needs_speech
FILES = ("en_radio_8s.wav", "en_kimk_8s.mp3", "en_vlog_10s.wav", "zh_news_8s.wav",
         "hi_news_22s.wav")


@pytest.fixture(scope="module")
def analyses(driver):
    return {f: driver.analyse(load_audio(SPEECH / f)) for f in FILES}


def _clip(driver, analyses, name: str, lag: float = 0.0, noise: float = 0.3,
          seed: int = 0) -> Clip:
    """A talking head whose lips are the shipped driver's z-scores read ``lag`` seconds
    later than the frame (its audio muxed ``lag`` early), plus noise."""
    a = analyses[name]
    times = np.arange(0.0, a.duration, 0.04)
    lips = driver.standardised(a, times + lag).astype(np.float64)
    rng = np.random.default_rng(seed)
    lips = lips / lips.std(0) + noise * rng.standard_normal(lips.shape)
    return Clip(name, times, 0.1 + 0.02 * lips, a)


def test_the_fit_learns_the_lips_and_removes_a_videos_audio_offset(driver, analyses):
    clips = [_clip(driver, analyses, f, lag=0.12 if i == 0 else 0.0, seed=i)
             for i, f in enumerate(FILES[:4])]
    model, figures = fit_regressor(clips, driver)
    offsets = figures["offsets_s"]
    # the mis-muxed video is re-aligned, the others left within a frame at 25 fps (34 s of
    # speech for 6341 inputs: measured 0.08 and -0.04 to -0.02, 0.12 and 0 before the
    # Whisper encoder's inputs)
    assert abs(offsets[FILES[0]] - 0.12) <= 0.041
    assert all(abs(offsets[f]) <= 0.041 for f in FILES[1:4])
    assert figures["lovo_r_opening"] > 0.5 and figures["videos"] == 4  # measured 0.60
    # the fitted regressor on speech it never saw: the known lips, in face-mesh units
    from dubber.mouth.driver import MouthDriver

    unseen = _clip(driver, analyses, FILES[4], noise=0.0)
    fitted = MouthDriver(regressor=model, workers=0)
    params = fitted.regressor.predict(fitted.features(unseen.analysis, unseen.times))
    assert _corr(params[:, 0], unseen.truth[:, 0]) > 0.75
    assert np.all(np.abs(np.median(params, 0) - np.median(unseen.truth, 0)) < 0.02)


def test_without_alignment_the_mis_muxed_video_is_fitted_as_it_is(driver, analyses):
    clips = [_clip(driver, analyses, f, lag=0.12 if i == 0 else 0.0, seed=i)
             for i, f in enumerate(FILES[:4])]
    _, aligned = fit_regressor(clips, driver)
    _, plain = fit_regressor(clips, driver, align=False)
    assert plain["offsets_s"] == {}
    assert plain["lovo_r_opening"] < aligned["lovo_r_opening"]


def test_measured_offsets_set_where_the_fit_puts_the_sound(driver, analyses):
    # every video muxed 80 ms early: cross-validation alone places them only against each
    # other and finds them all in sync; two offsets measured (by the sync model) carry the
    # others with them
    clips = [_clip(driver, analyses, f, lag=0.08, seed=i) for i, f in enumerate(FILES[:4])]
    _, alone = fit_regressor(clips, driver)
    assert all(abs(v) <= 0.021 for v in alone["offsets_s"].values())
    measured = {FILES[0]: 0.08, FILES[1]: 0.08, "not_a_training_video": -0.2}
    _, anchored = fit_regressor(clips, driver, measured=measured)
    got = anchored["offsets_s"]
    assert set(got) == set(FILES[:4]) and got[FILES[0]] == got[FILES[1]] == 0.08
    assert all(abs(got[f] - 0.08) <= 0.021 for f in FILES[2:4])


@pytest.mark.skipif(not (MEDIA / "corpus").is_dir(), reason="../shared/media is not present")
def test_a_measured_offset_is_where_the_fit_reads_the_sound(tmp_path):
    # the same video with its picture 120 ms after its sound plays 120 ms out of sync
    # (the sync model hears it so); the fit reads the sound from its first sample against
    # the first frame, where nothing moved, so the offset it removes is the original's; a
    # file without a voice to judge gets none
    from dubber.sync.check import check_sync

    video = MEDIA / "corpus" / "address_en_512_10s.mp4"
    late = tmp_path / "late.mp4"
    ffmpeg("-itsoffset", "0.12", "-i", str(video), "-i", str(video), "-map", "0:v",
           "-map", "1:a", "-c", "copy", str(late))
    silent = tmp_path / "silent.mp4"
    ffmpeg("-i", str(video), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v",
           "-map", "1:a", "-c:v", "copy", "-shortest", str(silent))
    heard = check_sync(late).median_offset_ms - check_sync(video).median_offset_ms
    assert heard == pytest.approx(-120, abs=20)
    got = measured_offsets([video, late, silent], max_shift=None)
    assert set(got) == {"address_en_512_10s", "late"}
    assert got["late"] == pytest.approx(got["address_en_512_10s"], abs=0.021)
    assert measured_offsets([late], max_shift=0.01)["late"] == np.clip(got["late"], -0.01, 0.01)


def test_more_training_videos_predict_an_unseen_one_better(driver, analyses):
    # lips mostly noise: one video alone says little about the relation, four say more
    clips = [_clip(driver, analyses, f, noise=2.5, seed=i) for i, f in enumerate(FILES)]
    curve = learning_curve(clips, driver, [1, 4, 9], draws=3, lam=3000.0)
    assert [row["videos"] for row in curve] == [1, 4]  # 9 of 4 others cannot be drawn
    assert all(row["fits"] == 3 * len(FILES) for row in curve)
    assert curve[1]["r"] > curve[0]["r"] + 0.03
    assert curve[1]["sd"] < 0.1


def test_the_command_refuses_what_it_cannot_fit_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing.mp4"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.mp4" in err[0]
    assert main([str(SPEECH / "en_radio_8s.wav"), "--learning-curve"]) == 2
    assert "at least 3 training videos" in capsys.readouterr().err
    assert main([str(SPEECH / "en_radio_8s.wav"), "--cross-fit", str(tmp_path / "x.mp4")]) == 2
    assert "--cross-fit needs at least 3 training videos" in capsys.readouterr().err
    assert main([str(SPEECH / "en_radio_8s.wav"), "--hold-out", "en_radio_8s"]) == 2
    assert "no videos to fit on" in capsys.readouterr().err


def test_the_regressors_default_size_is_the_feature_layouts():
    from dubber.models.dims import MouthDriverDims
    from dubber.mouth.features import CONTEXT_OFFSETS, CONTEXT_WIDTH, N_FEATURES

    d = MouthDriverDims()
    assert (d.n_features, tuple(d.context_offsets), d.context_width) == (
        N_FEATURES, CONTEXT_OFFSETS, CONTEXT_WIDTH)


def test_cross_fit_never_fits_a_video_on_itself(driver, analyses):
    # three training videos; of the two judged ones, one has lips that follow the speech
    # and one has lips of pure noise: fitted on itself, the noise would be partly learnt
    train = [_clip(driver, analyses, f, noise=0.3, seed=i) for i, f in enumerate(FILES[:3])]
    follows = _clip(driver, analyses, FILES[3], noise=0.3, seed=7)
    noise = _clip(driver, analyses, FILES[4], noise=0.0)
    noise.truth = 0.1 + 0.02 * np.random.default_rng(5).standard_normal(noise.truth.shape)
    rows = cross_fit(train, [follows, noise], driver, lam=3000.0)
    assert [r["name"] for r in rows] == [FILES[3], FILES[4]]
    assert abs(rows[1]["more"][0]) < 0.15  # never fitted on its own noise
    (zero, cal), (zero_more, cal_more) = rows[0]["alone"], rows[0]["more"]
    assert min(zero, zero_more) > 0.5 and np.isfinite(cal) and np.isfinite(cal_more)
    assert [r["videos"] for r in rows] == [4, 4]  # the training videos and the other one
