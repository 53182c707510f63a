"""Speaker choice from the sync model, `dub inspect --sheet`, `dub train sync-model` and the
check that ends `dub`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from dubber.bench.sync import FIXTURE, two_faces_match
from tests.helpers import CLIPS, MEDIA, SPEECH, needs_media

_TRACKS: dict = {}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    from dubber.config import load_config
    from dubber.faces.analyze import analyze

    folder = tmp_path_factory.mktemp("sync_speaker_cache")

    def get(name: str):
        if name not in _TRACKS:
            _TRACKS[name] = analyze(CLIPS / name, load_config("fast"), cache_dir=folder)
        return _TRACKS[name]

    return get


@needs_media
def test_katie_is_the_speaker_on_95_percent_of_frames(analysed):
    tracks = analysed("katie_512_mpeg4_en.mp4")
    share = np.mean([bool(tracks.speakers_at(f)) for f in range(tracks.frame_count)])
    assert share >= 0.95, share
    assert tracks.settings["speaker_cue"] == "sync"
    # the tracks file keeps its schema; the speaking score is the sync score
    t = tracks.tracks[0]
    assert len(t.speaking) == len(t) and t.speaking.max() > 0


@needs_media
def test_split_screen_speakers_match_the_hand_labelled_fixture(analysed):
    tracks = analysed("two_faces_splitscreen_720p.mp4")
    m = two_faces_match(tracks, json.loads(FIXTURE.read_text()))
    assert m["two_faces_match"] >= 0.9, m
    # each change of speaker is followed within 0.3 s
    assert len(m["two_faces_handover_s"]) == 4 and max(m["two_faces_handover_s"]) <= 0.3, m


@needs_media
@pytest.mark.parametrize("name", ["dancer_tinyface.mp4", "woman_silent_720p30.mp4"])
def test_no_speaker_where_no_lips_follow_the_sound(analysed, name):
    # a dancer's lips against music, a silent face over a voice: nobody speaks on screen
    tracks = analysed(name)
    assert not any(tracks.speakers_at(f) for f in range(tracks.frame_count))


def test_a_face_in_sync_over_its_shot_keeps_the_role_where_its_spans_dip():
    from dubber.sync.score import SyncCurves
    from dubber.sync.speaker import hold_speaker, shot_hold

    rng = np.random.default_rng(0)
    n = 100
    dist = 1.0 + 0.02 * rng.standard_normal((n, 31)).astype(np.float32)
    dist[:, 15] -= 0.06  # in sync at offset 0 over the shot, a shallow dip on each window
    speech = np.ones(n, bool)
    speech[60:] = False  # the audio stops at row 60
    held = shot_hold(SyncCurves(0, dist, speech), span=75, min_sync=0.07)
    assert held[:40].min() >= 0.07 and held[-5:].max() == 0  # not where the audio is silent
    # the same curves at offset +8 (out of sync): no hold
    shifted = np.roll(dist, 8, axis=1)
    assert shot_hold(SyncCurves(0, shifted, speech), 75, 0.07).max() == 0
    # a face more in sync on a frame keeps it; the held face takes the rest
    a, b = np.array([0.0, 0.02, 0.2]), np.array([0.1, 0.0, 0.0])
    out = hold_speaker({1: a, 2: b}, {1: np.full(3, 0.07), 2: np.zeros(3)})
    assert list(out[1]) == [0.0, 0.07, 0.2] and list(out[2]) == [0.1, 0.0, 0.0]


def test_a_face_whose_lips_are_shut_loses_to_one_whose_lips_move():
    from dubber.sync.speaker import prefer_moving

    scores = {1: np.array([0.2, 0.2, 0.2]), 2: np.array([0.1, 0.1, 0.0])}
    moving = {1: np.array([True, False, False]), 2: np.array([True, True, True])}
    out = prefer_moving(scores, moving)
    assert list(out[1]) == [0.2, 0.0, 0.2] and list(out[2]) == [0.1, 0.1, 0.0]
    # alone in its shot, a face keeps its scores
    assert prefer_moving({1: scores[1]}, {1: moving[1]})[1] is scores[1]


@needs_media
def test_inspect_sheet_plots_the_sync_score(dub, tmp_path):
    sheet = tmp_path / "sheet.png"
    r = dub("inspect", str(CLIPS / "man_map_844_en.mp4"), "--sheet", str(sheet), "-q")
    assert r.code == 0, r
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sheet.stat().st_size > 20_000


@needs_media
@pytest.mark.slow
def test_train_sync_model_publishes_weights_with_a_manifest_entry(dub, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("man_map_844_en.mp4", "woman_glasses_524_en.mp4"):
        os.symlink(CLIPS / name, videos / name)
    weights = tmp_path / "weights"
    r = dub("train", "sync-model", "--corpus", str(videos), "--weights", str(weights),
            "--steps", "3", "--val-every", "0", "--set", "val=woman_glasses_524_en", "-q")
    assert r.code == 0, r
    assert (weights / "lip-sync.safetensors").is_file()
    from dubber.models.registry import read_manifest

    e = read_manifest(weights)["lip-sync"]
    assert e.model == "lip_sync" and e.sha256 and "man_map_844_en" in e.trained_on
    assert e.figures["steps"] == 3 and "val_span2s_offset1" in e.figures


def test_train_sync_model_on_a_missing_folder_is_one_line_exit_2(dub, tmp_path):
    r = dub("train", "sync-model", "--corpus", str(tmp_path / "nope"))
    assert r.code == 2 and r.err.count("\n") == 1 and "folder of videos" in r.err


@needs_media
@pytest.mark.slow
def test_dub_ends_with_the_sync_check_and_writes_the_report(dub, tmp_path):
    out = tmp_path / "out.mp4"
    report = tmp_path / "report.json"
    r = dub(str(CLIPS / "man_map_844_en.mp4"), "--audio", str(SPEECH / "en_vlog_10s.wav"),
            "-o", str(out), "--passthrough", "--report", str(report))
    assert r.code == 0, r
    last = r.out.strip().splitlines()[-1]
    assert last.startswith("sync: ") and str(report) in last
    rep = json.loads(report.read_text())
    # the picture is untouched, so the original lips do not follow another voice
    assert rep["verdict"] == "out of sync", rep
    assert rep["audio"].endswith("en_vlog_10s.wav")
    # Without --report a pass-through is not checked: it changed no mouth.
    r = dub(str(CLIPS / "man_map_844_en.mp4"), "--audio", str(SPEECH / "en_vlog_10s.wav"),
            "-o", str(tmp_path / "plain.mp4"), "--passthrough")
    assert r.code == 0, r
    assert r.out.strip().splitlines()[-1].startswith("wrote ") and "sync:" not in r.out


@pytest.mark.parametrize("name", ["sync", "batch"])
def test_media_folder_layout_is_what_the_benchmark_expects(name):
    import importlib

    bench = importlib.import_module(f"dubber.bench.{name}")
    assert bench.MEDIA.resolve() == MEDIA.resolve()


def test_prepare_says_how_many_frames_it_kept_and_why_it_dropped_the_rest(tiny_corpus):
    from dubber.train.corpus import Corpus
    from dubber.train.prepare import describe_accounting

    acc = Corpus(tiny_corpus).manifest.frame_accounting
    # one speaking face over 4.9 s: nearly all frames kept, the rest accounted for
    assert acc["kept"] >= 100
    assert acc["kept"] + acc["not_in_sync"] + acc["several_faces"] + acc["short"] == acc["frames"]
    assert describe_accounting(acc).startswith(f"kept {acc['kept']} of {acc['frames']} frames")
