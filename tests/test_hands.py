"""Hands before a dubbed face: found, drawn, and left in front of the new mouth."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dubber.config import load_config
from dubber.faces.hands import HandFinder, covers, silhouette
from dubber.faces.landmarks import LIP_OUTER
from dubber.mouth.geometry import eye_distance
from tests.helpers import CLIPS, SPEECH, decoded_planes, ffmpeg, needs_media
from tests.test_mouth_render import _texture, kim_points  # noqa: F401  (a fixture)

# An open right hand, fingers up, in palm widths around the palm's centre: wrist, thumb
# (1-4), then index, middle, ring and little finger from knuckle to tip.
_CANON = np.array(
    [(0.0, 0.9),
     (-0.45, 0.6), (-0.75, 0.35), (-0.95, 0.1), (-1.1, -0.1),
     (-0.5, -0.25), (-0.6, -0.7), (-0.65, -1.0), (-0.7, -1.25),
     (-0.15, -0.3), (-0.17, -0.8), (-0.18, -1.15), (-0.19, -1.4),
     (0.18, -0.28), (0.22, -0.75), (0.25, -1.05), (0.27, -1.3),
     (0.5, -0.2), (0.6, -0.55), (0.66, -0.8), (0.7, -1.0)])


def _hand(centre, palm: float, angle: float = 0.0) -> np.ndarray:
    """The canonical hand scaled to ``palm`` pixels (index to little knuckle: 1 unit),
    turned by ``angle`` radians, its palm's centre at ``centre``."""
    c, s = np.cos(angle), np.sin(angle)
    return (_CANON @ np.array([[c, s], [-s, c]]) * palm + centre).astype(np.float32)


def test_the_silhouette_covers_the_palm_and_every_finger_to_its_tip_and_nothing_far():
    hand = _hand((200, 200), 100)
    m = silhouette(hand[None], (0, 0, 400, 400))
    for x, y in np.round(hand).astype(int):
        assert m[y, x] == 1.0
    tip = hand[12] + 0.3 * (hand[12] - hand[11])  # past the last landmark: the fingertip
    assert m[int(tip[1]), int(tip[0])] == 1.0
    assert m[200, 200] == 1.0  # the palm between the knuckles and the wrist
    import cv2

    reach = np.vstack([hand, hand[[4, 8, 12, 16, 20]] + 0.5 * (hand[[4, 8, 12, 16, 20]]
                                                             - hand[[3, 7, 11, 15, 19]])])
    hull = cv2.convexHull(reach.astype(np.float32))
    outside = np.array([[cv2.pointPolygonTest(hull, (float(x), float(y)), True)
                         for x in range(0, 400, 4)] for y in range(0, 400, 4)])
    assert m[::4, ::4][outside < -45].max() == 0  # nearly half a palm beyond the hand: 0
    # between the thumb and the index finger: not the hand
    gap = np.round((hand[4] + hand[8]) / 2).astype(int)
    assert m[gap[1], gap[0]] < 0.5
    # a hard silhouette is 0/1; a soft one only grows outwards
    hard = silhouette(hand[None], (0, 0, 400, 400), soft=False)
    assert set(np.unique(hard)) == {0.0, 1.0} and np.all(m[hard == 1] == 1.0)
    # the box is a window on the same drawing
    assert np.array_equal(silhouette(hand[None], (100, 50, 300, 380)), m[50:380, 100:300])


def test_a_hand_covers_a_region_it_reaches_and_not_one_a_palm_away():
    hand = _hand((200, 200), 100)
    lips = np.array([(150, 10), (250, 10), (250, 40), (150, 40)], float)  # above the tips
    assert covers(hand[None], lips + [0, 40])  # the middle fingertip reaches y ~ 50
    assert not covers(hand[None], lips - [0, 40])
    assert covers(hand[None], lips - [0, 40], grow=60)
    assert not covers(np.zeros((0, 21, 2), np.float32), lips)


@needs_media
def test_the_finder_finds_the_hand_waved_before_a_face_and_none_before_kim():
    """two_faces_splitscreen_720p: the man on the right waves his hand before his mouth
    in the first seconds; kim_1080p30_en has no hand in sight."""
    import av

    from dubber.media.frames import FrameBatch, PixelLayout

    def frame(clip, n):
        with av.open(str(clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i == n:
                    lay = PixelLayout.from_pix_fmt(f.format.name, f.width, f.height)
                    return FrameBatch(lay, [f])

    boxer = (771.3, 111.6, 994.1, 334.3)  # his face on frame 20 (the analysis pass's box)
    batch = frame(CLIPS / "two_faces_splitscreen_720p.mp4", 20)
    finder = HandFinder(1280, 720)
    try:
        hands = finder.find(1, batch, 0, boxer)
        assert len(hands) == 1
        lips = np.array([(849, 238), (913, 238), (913, 296), (849, 296)], float)
        assert covers(hands, lips, grow=15)  # his fingers by his mouth
        wrist, tips = hands[0, 0], hands[0, [8, 12, 16]]
        assert wrist[1] > tips[:, 1].max() + 100  # fingers up, the wrist under his chin
        assert 700 < wrist[0] < 850 and wrist[1] > 334
        kim = frame(CLIPS / "kim_1080p30_en.mp4", 40)
        wide = HandFinder(1920, 1080)
        assert len(wide.find(2, kim, 0, (860, 180, 1090, 470))) == 0
        wide.close()
    finally:
        finder.close()


# -- the mouth stage ---------------------------------------------------------------------------

def _stage_run(kim_points, tmp_path, hands_per_frame, keep_hands=True, n=6,  # noqa: F811
               planned=True):
    """A dubbed face (kim's mesh) on ``n`` frames of a texture, drawn from one bank frame of
    another texture. Returns (the frames' RGB before, after, the stage, the render box)."""
    from dubber.chunk import Chunk
    from dubber.faces.select import Face
    from dubber.media.color import ColorSpec, rgb_to_yuv_region, yuv_region_to_rgb
    from dubber.media.frames import FrameBatch, PixelLayout
    from dubber.mouth.bank import MouthBank
    from dubber.mouth.choose import Blend
    from dubber.mouth.plan import PlannedFace
    from dubber.mouth.warp import render_box
    from dubber.stages.mouth import MouthStage

    lay = PixelLayout(1920, 1080, 8, "420")
    spec = ColorSpec.guess(1920, 1080)
    whole = (0, 0, 1920, 1080)
    frames = FrameBatch.empty(lay, n)
    for i in range(n):
        rgb_to_yuv_region(_texture(1080, 1920, 1), frames, i, whole, spec, np.ones((1080, 1920)))
    before = [yuv_region_to_rgb(frames, i, whole, spec) for i in range(n)]
    box = render_box(kim_points, lay)
    x0, y0, x1, y1 = box[0] - 40, box[1] - 40, box[2] + 40, box[3] + 40
    crop = (_texture(1080, 1920, 2)[y0:y1, x0:x1] * 255).round().astype(np.uint8)
    (tmp_path / "0.crops").write_bytes(crop.tobytes())
    rows = n + 1  # the n dubbed frames, then the bank frame drawn from (frame 100)
    hands = np.full((rows, 2, 21, 2), np.nan, np.float32)
    for f, h in hands_per_frame.items():
        hands[f, :len(h)] = h
    bank = MouthBank(0, np.r_[np.arange(n), 100].astype(np.int64),
                     np.repeat(kim_points[None], rows, 0).astype(np.float32),
                     np.zeros((rows, 3), np.float32), np.zeros((rows, 4), np.float32),
                     np.full((rows, 3), 0.5, np.float32), np.ones(rows, np.float32),
                     np.r_[np.zeros(n, bool), True],
                     np.r_[np.zeros((n, 4)), [[x0, y0, x1, y1]]].astype(np.int64),
                     np.zeros(rows, np.int64), tmp_path / "0.crops", np.dtype(np.uint8), hands)
    plan = {(f, 0): PlannedFace(Blend((n,), (1.0,), 0.0), 1.0) for f in range(n) if planned}
    chunk = Chunk(0, np.arange(n), np.arange(n), Fraction(1, 25), frames)
    chunk.faces = [[Face((860.0, 180.0, 1090.0, 470.0), 0)] for _ in range(n)]
    stage = MouthStage(plan, {0: bank})
    cfg = load_config("fast", {"mouth": {"keep_hands": keep_hands}})
    stage(chunk, None, cfg)
    after = [yuv_region_to_rgb(frames, i, whole, spec) for i in range(n)]
    return before, after, stage, box, chunk


def test_a_hand_before_the_lips_keeps_the_faces_own_mouth_and_fades_the_new_one_in(
        kim_points, tmp_path):  # noqa: F811
    eye = eye_distance(kim_points)
    on_lips = _hand(kim_points[14] + [0, 0.4 * eye], 0.6 * eye)  # fingers over the mouth
    before, after, stage, box, chunk = _stage_run(kim_points, tmp_path, {0: on_lips[None]})
    change = [float(np.abs(a - b).mean()) for a, b in zip(after, before)]
    assert change[0] == 0.0  # the frame the hand is on: untouched
    assert stage.hidden == 1 and chunk.rendered[0] == [] and chunk.faces[0] == []
    # the next frame is still under that hand's silhouette (a frame's neighbours count);
    # then the new mouth fades in over mouth.fade (3) frames and is whole after
    assert change[1] == 0.0
    assert 0 < change[2] < change[3] < change[4]
    assert change[4] == pytest.approx(change[5], rel=1e-6)
    assert change[2] == pytest.approx(0.5 * change[4], rel=0.1)
    # without the setting the hand is painted over like any other pixel
    _, plain, stage, _, _ = _stage_run(kim_points, tmp_path, {0: on_lips[None]},
                                       keep_hands=False)
    assert np.abs(plain[0] - before[0]).mean() > 0.5 * change[5] and stage.hidden == 0


def test_a_hand_beside_the_mouth_stays_in_front_of_it(kim_points, tmp_path):  # noqa: F811
    eye = eye_distance(kim_points)
    # a hand on her chin, fingers sideways, under the lips (not within LIP_GROW of them)
    below = _hand(kim_points[14] + [0.1 * eye, 0.7 * eye], 0.5 * eye, -np.pi / 2)
    assert not covers(below[None], kim_points[list(LIP_OUTER)], 0.17 * eye)
    n = 3
    before, after, stage, box, _ = _stage_run(kim_points, tmp_path,
                                              {f: below[None] for f in range(n)}, n=n)
    _, plain, _, _, _ = _stage_run(kim_points, tmp_path, {f: below[None] for f in range(n)},
                                   keep_hands=False, n=n)
    hand = silhouette(below[None], (0, 0, 1920, 1080), soft=False) > 0
    drawn = np.abs(plain[1] - before[1]).max(-1) > 0.02  # where a hand-blind render draws
    assert (hand & drawn).sum() > 500  # the hand is in the drawn region ...
    assert stage.hidden == 0
    for i in range(n):
        assert np.abs(after[i] - before[i])[hand].max() < 1e-6  # ... and stays in front
        assert (np.abs(after[i] - before[i]).max(-1) > 0.02)[~hand].sum() > 0.8 * (
            drawn & ~hand).sum()  # the mouth is still drawn around it
    # a face the bank cannot draw goes on to the model stages with its hands
    _, _, stage, _, chunk = _stage_run(kim_points, tmp_path, {1: below[None]}, n=n,
                                       planned=False)
    assert stage.drawn == 0 and all(len(f) == 1 for f in chunk.faces)
    assert sorted(chunk.hands) == [(0, 0), (1, 0), (2, 0)]  # the frame and its neighbours
    assert np.array_equal(chunk.hands[(0, 0)], below[None])


@needs_media
def test_dubbing_the_boxer_leaves_the_hand_he_waves_before_his_mouth(dub, tmp_path):
    """The first 3.2 s of two_faces_splitscreen_720p, the right man speaking with his hand
    before his face: every pixel of the hand the bank found is left as it was."""
    from dubber.faces.analyze import tracks_for_run
    from dubber.media.probe import probe
    from dubber.mouth.plan import dubbed_banks

    clip = tmp_path / "boxer.mkv"
    ffmpeg("-i", str(CLIPS / "two_faces_splitscreen_720p.mp4"), "-t", "3.2", "-c:v", "ffv1",
           "-c:a", "flac", str(clip))
    import yaml

    from dubber.config import read_preset

    preset = read_preset("fast")  # the renderer alone: without the (invisible) watermark,
    preset.setdefault("watermark", {})["enabled"] = False  # which marks the whole face
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(preset))
    out = tmp_path / "out.mkv"
    r = dub(clip, "--audio", SPEECH / "en_vlog_10s.wav", "-o", out, "--codec", "ffv1",
            "--preset", tmp_path / "p.yaml", "--no-check")  # not -q: it hides warnings
    assert r.code == 0, r
    # the user is told, since those faces show the original mouth
    assert any("kept their own mouth: a hand was before the lips" in line
               for line in r.err.splitlines() if line.startswith("dub: warning:"))
    cfg = load_config(str(tmp_path / "p.yaml"))
    tracks = tracks_for_run(clip, cfg)
    banks = dubbed_banks(probe(clip), tracks, cfg)  # from the cache
    src, dst = decoded_planes(clip), decoded_planes(out)
    changed = seen = 0
    for f in range(len(src)):
        diff = np.abs(src[f][0].astype(int) - dst[f][0]) > 0
        changed += diff.any()
        for bank in banks.values():
            h = bank.hands_at(f)
            if len(h):
                seen += 1
                hand = silhouette(h, (0, 0, diff.shape[1], diff.shape[0]), soft=False) > 0
                assert not (diff & hand).any(), f"frame {f}: the hand was painted over"
    assert seen > 20  # he waves on most of these frames
    assert changed > 20  # and his (or the other man's) mouth is still dubbed
