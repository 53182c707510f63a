"""The analysis pass on the real clips of ../shared/media (each analysed once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from dubber.config import load_config
from dubber.faces.analyze import analyze
from tests import faces_media as fm

_CACHE: dict[str, object] = {}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces_clips_cache")

    def get(name: str):
        if name not in _CACHE:
            _CACHE[name] = analyze(fm.clip(name), load_config("fast"), cache_dir=folder)
        return _CACHE[name]

    return get


def _frames_with_face(tracks) -> float:
    on = np.zeros(tracks.frame_count, bool)
    for t in tracks.tracks:
        on[t.first: t.last + 1] = True
    return on.mean()


def _speaking_frames(tracks) -> int:
    return sum(w.end - w.start + 1 for s in tracks.shots for w in s.windows)


def test_kim_face_on_99_percent_of_frames_and_speaker_selected(analysed):
    tracks = analysed("kim_1080p30_en.mp4")
    assert _frames_with_face(tracks) >= 0.99
    assert all(s.selected_track is not None for s in tracks.shots if s.end - s.start > 30)
    assert _speaking_frames(tracks) >= 0.5 * tracks.frame_count


def test_small_face_in_portrait_hevc_found_on_95_percent_of_frames(analysed):
    tracks = analysed("woman_smallface_hevc25.mp4")
    assert (tracks.width, tracks.height) == (1080, 1920)
    assert _frames_with_face(tracks) >= 0.95
    detected = sum(int((t.scores > 0).sum()) for t in tracks.tracks)
    assert detected >= 0.95 * tracks.frame_count  # detected, not only bridged


@pytest.mark.parametrize("name", ["dancer_tinyface.mp4", "woman_silent_720p30.mp4"])
def test_a_face_that_does_not_speak_is_never_selected(analysed, name):
    tracks = analysed(name)
    assert tracks.tracks, "the face itself is found"
    assert all(s.selected_track is None and not s.windows for s in tracks.shots)
    assert all(tracks.speakers_at(f) == [] for f in range(tracks.frame_count))


def test_cutaway_without_a_face_is_its_own_shot_without_speaker(analysed):
    tracks = analysed("youtuber_cutaway_720p30.mov")
    fps = float(tracks.frame_rate)
    faceless = [s for s in tracks.shots
                if not any(t.first <= s.end and t.last >= s.start for t in tracks.tracks)]
    assert faceless, "the cutaway footage is a shot of its own"
    assert sum(s.end - s.start + 1 for s in faceless) >= 2 * fps
    assert all(s.selected_track is None and not s.windows for s in faceless)
    # the presenter is there before and after it, and speaks in both parts
    first = faceless[0].start
    last = faceless[-1].end
    assert any(t.last < first for t in tracks.tracks)
    assert any(t.first > last for t in tracks.tracks)
    assert any(w.end < first for s in tracks.shots for w in s.windows)
    assert any(w.start > last for s in tracks.shots for w in s.windows)


def test_two_faces_tracked_with_stable_ids_and_turns_assigned(analysed):
    tracks = analysed("two_faces_splitscreen_720p.mp4")
    assert len(tracks.tracks) == 2
    left, right = sorted(tracks.tracks, key=lambda t: t.boxes[:, 0].mean())
    for t in (left, right):  # each face is one track over (nearly) the whole clip
        assert len(t) >= 0.95 * tracks.frame_count
    # ids are stable: the left track stays on the left half, the right one on the right
    assert (left.boxes[:, 2] < tracks.width / 2 + 20).all()
    assert (right.boxes[:, 0] > tracks.width / 2 - 20).all()
    windows = [w for s in tracks.shots for w in s.windows]
    assert {w.track for w in windows} == {left.id, right.id}, "both take turns"
    # The left man keeps his mouth shut for seconds while the right one talks: frames
    # inside 1.5 s or more of shut lips (aperture < 0.02) are never given to that face.
    fps = float(tracks.frame_rate)
    assert any(b - a > 2 * fps for a, b in _shut_runs(left, fps)), "the clip has such a stretch"
    for t in (left, right):
        for a, b in _shut_runs(t, fps):
            assert not any(t.id in tracks.speakers_at(f) for f in range(a, b + 1)), (t.id, a, b)


def _shut_runs(t, fps):
    shut = np.nan_to_num(t.aperture, nan=1.0) < 0.02
    edges = np.flatnonzero(np.diff(np.concatenate([[0], shut.astype(int), [0]])))
    return [(a + t.first, b - 1 + t.first) for a, b in zip(edges[::2], edges[1::2])
            if b - a >= 1.5 * fps]


def test_render_lookup_gives_the_speaker_with_lips_inside_the_lower_face(analysed):
    from dubber.faces.crop import square_box
    from dubber.faces.mouth_region import square_mask
    from dubber.faces.select import FaceSelector
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    path = fm.clip("kim_1080p30_en.mp4")
    tracks = analysed("kim_1080p30_en.mp4")
    selector = FaceSelector(tracks)
    chunk = next(iter(read_chunks(probe(path), 16, 0.0, full=True)))
    faces = selector.faces(chunk)
    selector.close()
    assert len(faces) == len(chunk)
    for idx, row in zip(chunk.frame_indices.tolist(), faces):
        assert [f.track_id for f in row] == tracks.speakers_at(idx)
        for face in row:
            x0, y0, x1, y1 = face.box
            assert face.lip_polygon is not None and face.lip_polygon.shape == (20, 2)
            cx, cy = face.lip_polygon.mean(axis=0)
            assert x0 + 0.3 * (x1 - x0) < cx < x1 - 0.3 * (x1 - x0)
            assert y0 + 0.55 * (y1 - y0) < cy < y1 + 0.1 * (y1 - y0)
            sq = square_box(face.box, 1.6, chunk.frames.layout)
            mask = square_mask(face.lips(), sq, 0.15, size=256)
            assert mask.shape == (256, 256) and mask.max() > 0.99
            assert mask[: 256 // 3].max() == 0  # nothing above the nose is touched


def test_render_lookup_keeps_one_face_mesh_per_track_on_screen(analysed, monkeypatch):
    """A face-mesh graph holds tens of MB of native memory: the render keeps one per track
    while it is on screen (a fresh one after a gap) and closes it once the track is gone,
    so a film's memory grows neither with its length nor with its number of tracks."""
    import types
    from contextlib import closing

    import dubber.faces.landmarks as landmarks
    import dubber.faces.select as select
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    events = []

    class Counting(landmarks.Landmarker):
        def __init__(self):
            super().__init__()
            events.append("made")

        def close(self):
            events.append("closed")
            super().close()

    monkeypatch.setattr(landmarks, "Landmarker", Counting)
    real = analysed("kim_1080p30_en.mp4")
    tid = real.speakers_at(0)[0]
    # The same face as three tracks in turn (as after two cuts): frames 0-15 track A,
    # 16-19 nobody, 20-47 track B.
    tracks = types.SimpleNamespace(
        rotation=real.rotation, track=lambda t: real.track(tid),
        speakers_at=lambda f: [] if 16 <= f < 20 else ["A"] if f < 16 else ["B"])
    selector = select.FaceSelector(tracks)
    rows = []
    with closing(read_chunks(probe(fm.clip("kim_1080p30_en.mp4")), 16, 0.0, full=True)) as chunks:
        for chunk, _ in zip(chunks, range(3)):
            rows += selector.faces(chunk)
    assert all(f.lip_polygon is not None for row in rows for f in row)
    # A's graph was closed before B's was made, not kept for the rest of the film.
    assert events == ["made", "closed", "made"]
    selector.close()
    assert events == ["made", "closed", "made", "closed"]


def test_faces_stage_says_which_tracks_have_ended(analysed):
    """``tracks_ended`` lists each track handed out once, on the chunk that reaches
    its last frame, including a track that stopped speaking before it ended."""
    import types
    from contextlib import closing

    from dubber.faces.select import FacesStage
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    real = analysed("kim_1080p30_en.mp4")
    tid = real.speakers_at(0)[0]
    last = {"A": 9, "B": 60}  # B is on screen until frame 60 but speaks on 20-40 only
    tracks = types.SimpleNamespace(
        rotation=real.rotation,
        track=lambda t: types.SimpleNamespace(last=last[t], box_at=real.track(tid).box_at),
        speakers_at=lambda f: ["A"] if f <= 9 else ["B"] if 20 <= f <= 40 else [])
    stage = FacesStage(tracks, landmarks=False)
    ended = []
    with closing(read_chunks(probe(fm.clip("kim_1080p30_en.mp4")), 16, 0.0, full=True)) as chunks:
        for chunk, _ in zip(chunks, range(4)):  # frames 0-15, 16-31, 32-47, 48-63
            ended.append(stage(chunk, None, None).tracks_ended)
    stage.close()
    assert ended == [["A"], [], [], ["B"]]
