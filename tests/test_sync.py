"""The sync model on face-mesh lips: features, scores, `dub check-sync`, the library call."""

from __future__ import annotations

import json

import numpy as np
import torch

from dubber.bench.sync import shift_audio
from dubber.media.audio import load_audio
from dubber.sync import features as ft
from tests.helpers import CLIPS, SPEECH, ffmpeg, make_clip, needs_media

CLIP = CLIPS / "man_map_844_en.mp4"  # 5 s, one speaker, in sync with its audio
_ANALYSES: dict = {}


def _analysis(path):
    from dubber.sync.data import analyse_tracks

    if path not in _ANALYSES:
        _ANALYSES[path] = analyse_tracks(path)
    return _ANALYSES[path]


# -- features -----------------------------------------------------------------------------

def _fake_points(n: int, rng) -> np.ndarray:
    """A face-like point set: stable points fixed, the mouth opening and closing."""
    base = rng.uniform(-1, 1, (len(ft.MESH_POINTS), 2))
    idx = {p: i for i, p in enumerate(ft.MESH_POINTS)}
    base[idx[33]], base[idx[263]] = (-1.0, 0.0), (1.0, 0.0)
    base[idx[234]], base[idx[454]], base[idx[1]] = (-1.4, 0.3), (1.4, 0.3), (0.0, 0.5)
    pts = np.repeat(base[None], n, 0)
    pts[:, : ft.N_MOVING, 1] += 0.1 * np.sin(np.arange(n) / 3)[:, None]
    return pts


def test_head_pose_scale_and_position_do_not_change_the_features():
    rng = np.random.default_rng(0)
    pts = _fake_points(40, rng)
    feats, ok = ft.normalise_points(pts)
    # the same face turned 20 degrees in the image, 3x larger, moved: per frame differently
    moved = np.empty_like(pts)
    for f in range(len(pts)):
        th = np.deg2rad(20 + f)
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        moved[f] = 3 * pts[f] @ rot.T + [100 + 5 * f, 50]
    feats2, ok2 = ft.normalise_points(moved)
    assert ok.all() and ok2.all()
    assert np.abs(feats - feats2).max() < 1e-4
    assert np.abs(feats).max() > 0.05  # the mouth's movement is still there


def test_strong_profile_and_missing_mesh_are_unreadable():
    rng = np.random.default_rng(1)
    pts = _fake_points(10, rng)
    idx = {p: i for i, p in enumerate(ft.MESH_POINTS)}
    pts[3:5, idx[1]] = pts[3:5, idx[454]] - [0.05, 0]  # nose tip at the face's edge
    pts[7] = np.nan
    _, ok = ft.normalise_points(pts)
    assert ok.tolist() == [True] * 3 + [False] * 2 + [True] * 2 + [False] + [True] * 2


def test_resampling_follows_the_video_timestamps():
    # 30 fps frames with a ramp: on the 25 fps grid the ramp is sampled at k / 25 s
    times = np.arange(30) / 30
    feats = np.repeat(times[:, None], 4, 1).astype(np.float32)
    seq = ft.to_grid(times, feats, np.ones(30, bool))
    assert seq.start == 0 and len(seq) == 25
    np.testing.assert_allclose(seq.feats[:, 0], np.arange(25) / 25, atol=1e-6)


# -- the model on a real clip ----------------------------------------------------------

@needs_media
def test_own_audio_in_sync_and_a_shift_is_found():
    from dubber.sync.check import check_analysis
    from dubber.sync.speaker import load_sync_model

    model = load_sync_model()
    analysis = _analysis(CLIP)
    audio = load_audio(CLIP)
    own = check_analysis(analysis, audio, model)
    assert own.verdict == "in sync", own
    assert own.share_in_sync >= 0.9
    late = check_analysis(analysis, shift_audio(audio, 6 * 640), model)  # 6 frames at 25 fps
    assert late.verdict == "out of sync"
    offs = [s.offset_frames for s in late.segments if s.offset_frames is not None]
    assert offs and all(abs(o - 6) <= 1 for o in offs), offs


@needs_media
def test_the_score_is_differentiable_and_lower_in_sync():
    from dubber.sync.score import lip_windows, sync_distance
    from dubber.sync.speaker import load_sync_model, sequences

    model = load_sync_model()
    tracks, times, _ = _analysis(CLIP)
    seq = sequences(tracks.tracks, times)[tracks.tracks[0].id]
    T = model.dims.frames
    lips, ok = lip_windows(seq, T)
    rows = np.flatnonzero(ok)[20:120:5]
    audio = load_audio(CLIP)
    mel = ft.mel_span(audio, 0, 4 * (seq.start + len(seq) + 40))

    def mel_at(shift):
        return torch.stack([mel[:, 4 * (seq.start + k + shift) - 2 * T:
                                4 * (seq.start + k + shift) + 2 * T] for k in rows])

    x = lips[rows].clone().requires_grad_(True)
    d_sync = sync_distance(model, x, mel_at(0))
    d_off = sync_distance(model, lips[rows], mel_at(10))
    assert d_sync.mean() < d_off.mean()
    d_sync.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# -- dub check-sync ------------------------------------------------------------------------

@needs_media
def test_check_sync_own_audio_exit_0_with_json_and_sheet(dub, tmp_path):
    sheet = tmp_path / "sync.png"
    r = dub("check-sync", str(CLIP), "--json", "--sheet", str(sheet), "-q")
    assert r.code == 0, r
    rep = json.loads(r.out)
    assert rep["verdict"] == "in sync"
    seg = rep["segments"][0]
    assert {"track", "offset_frames", "offset_ms", "confidence", "distance", "verdict"} <= set(seg)
    assert sheet.stat().st_size > 1000


@needs_media
def test_check_sync_hears_a_film_as_it_plays_when_its_picture_starts_late(dub, tmp_path):
    """The same picture and sound, the picture put 0.4 s after the sound's start (as a
    capture or a careless cut leaves them): every player shows the sound 0.4 s early, and
    so must the check."""
    late = tmp_path / "late.mp4"
    ffmpeg("-i", str(CLIP), "-itsoffset", "0.4", "-i", str(CLIP), "-map", "1:v", "-map", "0:a",
           "-c", "copy", str(late))
    ms = []
    for video in (CLIP, late):
        r = dub("check-sync", str(video), "--json", "-q")
        rep = json.loads(r.out)
        ms.append(rep["segments"][0]["offset_ms"])
    assert rep["verdict"] == "out of sync" and r.code == 1
    assert abs(ms[1] - (ms[0] - 400)) <= 40 + 1, ms  # within a frame of 400 ms earlier


@needs_media
def test_check_sync_other_speech_exit_1(dub):
    r = dub("check-sync", str(CLIP), "--audio", str(SPEECH / "hi_news_22s.wav"), "-q")
    assert r.code == 1, r
    assert r.out.strip().splitlines()[-1].startswith("sync: out of sync")


@needs_media
def test_check_sync_silent_audio_is_no_speech(dub, tmp_path):
    silent = tmp_path / "silent.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "5", str(silent))
    r = dub("check-sync", str(CLIP), "--audio", str(silent), "-q")
    assert r.code == 1, r
    assert "no speech" in r.out.strip().splitlines()[-1]


@needs_media
def test_check_sync_video_without_audio_stream_one_line_exit_2(dub, tmp_path):
    sheet = tmp_path / "s.png"
    r = dub("check-sync", str(CLIPS / "glasses_selfie_noaudio.mp4"), "--sheet", str(sheet))
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and "no audio stream" in r.err and "--audio" in r.err
    assert not sheet.exists()


def test_check_sync_corrupt_file_one_line_exit_2(dub, tmp_path):
    bad = tmp_path / "bad.mp4"
    good = make_clip(tmp_path / "good.mp4", seconds=1.0)
    bad.write_bytes(good.read_bytes()[: 2000])
    sheet = tmp_path / "s.png"
    r = dub("check-sync", str(bad), "--sheet", str(sheet))
    assert r.code == 2, r
    assert r.err.startswith("dub: error:") and r.err.count("\n") == 1
    assert not sheet.exists()


def test_check_sync_no_face_one_line_exit_2(dub, tmp_path):
    clip = make_clip(tmp_path / "noface.mp4", seconds=2.0)
    r = dub("check-sync", str(clip), "--json")
    assert r.code == 2, r
    assert "no face" in r.err and r.err.count("\n") == 1
    assert r.out == ""


def test_a_part_of_a_shot_is_in_sync_only_when_its_track_is_over_the_shot():
    from dubber.sync.check import CheckSettings, judge_segment
    from dubber.sync.score import OffsetScore

    part = OffsetScore(-2, 0.08, 1.2, 120, 2.3)  # a 5 s part that matches by chance
    s = CheckSettings()
    assert judge_segment({0: part}, 120, s)[2] == "in sync"
    assert judge_segment({0: part}, 120, s, {0: OffsetScore(-13, 0.05, 1.3, 240, 1.7)})[2] \
        == "out of sync"
    assert judge_segment({0: part}, 120, s, {0: OffsetScore(-1, 0.1, 1.2, 240, 2.1)})[2] \
        == "in sync"
    # a deep minimum that does not stand out of a noisy curve is not a match
    assert judge_segment({0: OffsetScore(0, 0.13, 1.2, 40, 1.5)}, 40, s)[2] == "out of sync"


def test_training_aligns_a_video_whose_sound_lags_and_stretches_both_timelines():
    from dubber.sync.features import LipSequence
    from dubber.sync.augment import shift_mel, stretched_lips, stretched_mel

    mel = np.full((4, 40), -5.0, np.float32)
    mel[:, 20:24] = 1.0  # a sound at grid frame 5
    late = np.roll(mel, 8, axis=1)  # the same sound 2 frames late
    np.testing.assert_array_equal(shift_mel(late, 2)[:, :32], mel[:, :32])
    # played 1.25 times as fast about column 0: the sound comes at column 16, not 20
    fast = stretched_mel(mel, 0, 40, 0, 1.25)
    assert abs(int(np.argmax(fast[0])) - 16) <= 1 and fast[0].max() == 1.0
    feats = np.arange(50, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    seq = LipSequence(0, feats, np.ones(50, bool))
    np.testing.assert_allclose(stretched_lips(seq, 20, 5, 2, 1.5)[:, 0], [17, 18.5, 20, 21.5, 23])
    seq_hole = LipSequence(0, feats, np.r_[np.ones(24, bool), np.zeros(26, bool)])
    assert stretched_lips(seq_hole, 20, 5, 2, 1.5) is None  # would read unreadable frames
