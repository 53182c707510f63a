"""Per-character dub stems (dubber/stems.py) on the split-screen clip: each stem is matched
to its own face (the one whose lips moved when that stem speaks), drives only that face's
mouth, and the stems mixed are the output's dub track."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from dubber.config import load_config
from dubber.faces.tracks_file import Shot, Tracks, Track, Window
from dubber.stems import match_stems
from tests.helpers import CLIPS, SPEECH, decoded_planes, ffmpeg, needs_media

FPS = 25
SECONDS = 8.0  # the clip's first 8 s: the right face speaks until 5.3 s, then the left one
RIGHT_WINDOW = (0.0, 5.3)
LEFT_WINDOW = (5.32, 8.0)


def stem(path: Path, source: Path, window: tuple[float, float]) -> Path:
    """``source``'s speech inside ``window``, silence elsewhere, SECONDS long."""
    a, b = window
    ffmpeg("-i", str(source), "-t", str(SECONDS), "-af",
           f"volume=enable='not(between(t,{a},{b}))':volume=0", "-ac", "1", "-ar", "16000",
           str(path))
    return path


@pytest.fixture(scope="module")
def split(gen) -> Path:
    out = gen / "split_8s.mp4"
    if not out.exists():
        ffmpeg("-i", str(CLIPS / "two_faces_splitscreen_720p.mp4"), "-t", str(SECONDS),
               "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-c:a", "aac",
               str(out))
    return out


def batch(dub, folder: Path, clip: Path, stems: dict, name: str, **extra) -> Path:
    manifest = folder / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump({
        "defaults": {"preset": "unittest", "codec": "ffv1", "segment-seconds": 4.0},
        "episodes": [{"name": name, "input": str(clip), "output": f"out/{name}.mkv",
                      "stems": {k: str(v) for k, v in stems.items()}, **extra}]}))
    r = dub("batch", manifest, "-q")
    assert r.code == 0, r
    assert json.loads(r.out)["done"] == 1
    return folder / "out" / f"{name}.mkv"


def changed_sides(a, b) -> tuple[list[int], list[int]]:
    """Frames where the left / right half of the luma differs between two decodes."""
    left, right = [], []
    for f, (x, y) in enumerate(zip(a, b)):
        d = x[0] != y[0]
        half = d.shape[1] // 2
        if d[:, :half].any():
            left.append(f)
        if d[:, half:].any():
            right.append(f)
    return left, right


def within(frames: list[int], window: tuple[float, float], slack: float = 0.5) -> bool:
    lo, hi = (window[0] - slack) * FPS, (window[1] + slack) * FPS
    return all(lo <= f <= hi for f in frames)


def audio_rms_db(path: Path, a: float, b: float) -> float:
    with av.open(str(path)) as c:
        samples = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
        rate = c.streams.audio[0].rate
    x = samples[int(a * rate):int(b * rate)]
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12)


@needs_media
@pytest.mark.slow  # the analysis and three model renders of 8 s of 720p: ~60 s
def test_two_stems_each_move_their_own_face_only(dub, split, tmp_path):
    # A stem that speaks through its window (en_commentary_60s opens with 3 s of quiet).
    anna = stem(tmp_path / "anna.wav", SPEECH / "en_radio_8s.wav", RIGHT_WINDOW)
    ben = stem(tmp_path / "ben.wav", SPEECH / "hi_news_22s.wav", LEFT_WINDOW)
    ben2 = stem(tmp_path / "ben2.wav", SPEECH / "en_lecture_21s.wav", LEFT_WINDOW)
    anna2 = stem(tmp_path / "anna2.wav", SPEECH / "en_vlog_10s.wav", RIGHT_WINDOW)
    src = decoded_planes(split)
    one = batch(dub, tmp_path, split, {"ANNA": anna, "BEN": ben}, "one")
    out = decoded_planes(one)
    # Found automatically: each face is re-rendered only while its own stem speaks.
    left, right = changed_sides(src, out)
    assert len(left) > 40 and len(right) > 80
    # Within a second of its window: the speaker windows in the original come from the sync
    # model, and both men's mouths move until 9.3 s (tests/data/two_faces_speakers.json), so
    # the model may hand over to the left face before this stem's window opens at 5.32 s
    # (it does at 4.48 s; 0.5 s of slack is too little for that).
    assert within(left, LEFT_WINDOW, 1.0) and within(right, RIGHT_WINDOW, 1.0), (left, right)
    # Another speech for BEN changes the left face's mouth and nothing of the right face.
    other = decoded_planes(batch(dub, tmp_path, split, {"ANNA": anna, "BEN": ben2}, "two"))
    left, right = changed_sides(out, other)
    assert left and not right
    # The same with the faces named in the manifest (track ids of the analysis), for ANNA.
    from dubber.faces.analyze import tracks_for_run

    tracks = tracks_for_run(split, load_config("unittest"))
    right_id = max(tracks.tracks, key=lambda t: t.boxes[:, 0].mean()).id
    left_id = min(tracks.tracks, key=lambda t: t.boxes[:, 0].mean()).id
    third = decoded_planes(batch(dub, tmp_path, split, {"ANNA": anna2, "BEN": ben}, "three",
                                 stem_tracks={"ANNA": right_id, "BEN": left_id}))
    left, right = changed_sides(out, third)
    assert right and not left
    # The output's dub track is the two stems mixed: speech in both windows.
    assert audio_rms_db(one, 0.5, 5.0) > -45 and audio_rms_db(one, 5.8, 7.8) > -45
    _montage(src, out, [60, 170], tmp_path / "stems_montage.png")


def _montage(src, out, frames, path: Path) -> None:
    """Input | output luma for a frame in each speaker's window (looked at by hand)."""
    from PIL import Image

    rows = [np.concatenate([src[f][0], out[f][0]], axis=1) for f in frames]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def test_each_track_goes_to_the_stem_that_speaks_when_it_spoke():
    """The matching alone, on a made-up analysis: two faces taking turns in one shot."""
    n = 200
    aperture = np.zeros(n)

    def track(tid, speaking):
        ap = aperture.copy()
        ap[speaking] = 0.1 * (1 + np.sin(np.arange(speaking.sum())))  # lips move
        return Track(tid, 0, n - 1, np.tile([0, 0, 10, 10], (n, 1)).astype(float),
                     np.ones(n), ap, speaking.astype(float))

    first, second = np.zeros(n, bool), np.zeros(n, bool)
    first[:90], second[110:] = True, True
    tracks = Tracks(100, 100, FPS, n, (track(4, first), track(7, second)),
                    (Shot(0, n - 1, None, (Window(0, 89, 4), Window(110, 199, 7))),))
    activity = {"BEN": second.copy(), "ANNA": first.copy()}
    activity["BEN"][100:110] = True  # dubs do not keep the original's timing exactly
    assert match_stems(tracks, activity) == {"BEN": [7], "ANNA": [4]}
    # A stem that never speaks when any face spoke is matched to none.
    silent = {"ANNA": first, "NOBODY": np.zeros(n, bool)}
    assert match_stems(tracks, silent) == {"ANNA": [4], "NOBODY": []}
