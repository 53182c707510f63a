"""The mouth renderer: the actor's own mouths from the film, chosen, warped and blended.

Units on synthetic data (the path, the bank's bounds, the warp's geometry on a textured
image with a real face mesh), and end to end on real clips through the CLI (only the lower
face changes, 10-bit stays 10-bit, a broken bank is rebuilt, the fallback is taken).
"""

from __future__ import annotations

import numpy as np
import pytest

from dubber.config import load_config
from dubber.errors import UsageError
from dubber.faces.tracks_file import Track
from dubber.mouth.bank import MouthBank, choose_kept
from dubber.config import MouthConfig
from dubber.mouth.choose import choose
from dubber.mouth.geometry import apply, similarity
from tests.helpers import (CLIPS, SPEECH, decoded_planes, ffmpeg, frames_changed_only_where,
                           needs_media)


def _bank(params: np.ndarray, frames: np.ndarray | None = None) -> MouthBank:
    n = len(params)
    frames = np.arange(n) if frames is None else frames
    return MouthBank(track_id=0, frames=np.asarray(frames, np.int64),
                     points=np.zeros((n, 478, 2), np.float32),
                     params=np.asarray(params, np.float32), pose=np.zeros((n, 4), np.float32),
                     colour=np.full((n, 3), 0.5, np.float32), detail=np.ones(n, np.float32),
                     kept=np.ones(n, bool),
                     boxes=np.zeros((n, 4), np.int64), offsets=np.zeros(n, np.int64),
                     crops=None, dtype=np.dtype(np.uint8))


def _opening_run(n: int, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n)
    p = np.zeros((n, 3), np.float32)
    p[:, 0] = 0.15 + 0.12 * np.sin(0.4 * t + phase)
    p[:, 1] = 0.55
    p[:, 2] = 0.3
    return p


def test_a_relaxed_pause_keeps_the_drivers_opening_and_silence_takes_the_actors_rest():
    from dubber.mouth.target import REST_QUANTILE, actor_targets
    from dubber.mouth.track import VISEMES, MouthTrack

    bank = _bank(_opening_run(200))
    n = 60
    opening = np.full(n, 0.02, np.float32)  # the driver's shut mouth in silence ...
    opening[:20] = np.linspace(0.05, 0.4, 20)  # ... its speech ...
    opening[20:35] = 0.3  # ... and a breath between phrases, the lips apart
    viseme = np.full(n, VISEMES.index("X"), np.uint8)
    viseme[:35] = VISEMES.index("C")
    params = np.stack([opening, np.full(n, 0.5), np.full(n, 0.3)], 1).astype(np.float32)
    speech = np.arange(n) < 20
    track = MouthTrack(np.arange(n) / 25, viseme, params, speech, np.ones(n, np.float32))
    out = actor_targets(track, bank)
    rest = np.quantile(bank.params[:, 0], REST_QUANTILE)
    assert np.allclose(out[35:, 0], rest)  # silence: the actor's closed mouth
    # the breath: as open as the same driver opening in speech, well above rest
    in_speech = out[np.argmin(np.abs(opening[:20] - 0.3)), 0]
    assert np.allclose(out[20:35, 0], in_speech, atol=0.02) and out[20, 0] > rest + 0.1
    assert np.all(np.diff(out[:20, 0]) >= 0)  # speech keeps its order


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (20, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = similarity(src, dst)
    assert np.allclose(apply(m, src), dst, atol=1e-9)


def test_path_follows_the_banks_own_motion_when_the_target_does():
    """A target that replays a stretch of the bank is drawn from that stretch, in order:
    real motion, no jumps, and nothing cross-faded."""
    bank = _bank(_opening_run(120))
    target = bank.params[40:80]
    blends = choose(bank, target, np.zeros((40, 4)), np.full((40, 3), 0.5), MouthConfig())
    rows = [b.rows for b in blends]
    assert all(len(r) == 1 for r in rows)
    assert [r[0] for r in rows] == list(range(40, 80))


def test_jumps_are_few_and_cross_faded():
    """A target the bank has only in pieces: the path jumps rarely (runs of real frames
    between), and each jump fades in over `crossfade` frames with weights summing to 1."""
    bank = _bank(_opening_run(200))
    rng = np.random.default_rng(1)
    target = _opening_run(60, phase=1.3)
    target[:, 0] += rng.normal(0, 0.01, 60)
    cfg = MouthConfig(crossfade=3, jump=0.004)
    blends = choose(bank, target, np.zeros((60, 4)), np.full((60, 3), 0.5), cfg)
    assert all(b is not None for b in blends)
    assert all(abs(sum(b.weights) - 1) < 1e-6 for b in blends)
    main_rows = [b.rows[int(np.argmax(b.weights))] for b in blends]
    jumps = sum(1 for a, b in zip(main_rows, main_rows[1:]) if b != a + 1)
    assert jumps <= 6, main_rows
    faded = [b for b in blends if len(b.rows) > 1]
    assert len(faded) <= cfg.crossfade * (jumps + 1)
    # The chosen mouths follow the target's opening.
    chosen = bank.params[main_rows, 0]
    assert np.corrcoef(chosen, target[:, 0])[0, 1] > 0.9


def test_frames_with_no_close_bank_frame_are_left_to_the_fallback():
    bank = _bank(_opening_run(50))
    far = np.tile([[0.9, 1.5, 1.2]], (10, 1)).astype(np.float32)
    blends = choose(bank, far, np.zeros((10, 4)), np.full((10, 3), 0.5),
                    MouthConfig(max_cost=0.02))
    assert blends == [None] * 10
    empty = _bank(np.zeros((0, 3)))
    assert choose(empty, far, np.zeros((10, 4)), np.full((10, 3), 0.5),
                  MouthConfig()) == [None] * 10


def test_a_long_track_keeps_at_most_the_bound_in_whole_runs_of_varied_mouths():
    n = 3000
    ap = np.concatenate([np.full(2000, 0.02), 0.3 * np.abs(np.sin(np.arange(1000) / 7))])
    track = Track(0, 100, 100 + n - 1, np.zeros((n, 4)), np.ones(n), ap, np.ones(n))
    keep = choose_kept(track, 400)
    assert keep.sum() <= 400
    assert keep.sum() >= 300
    # Whole runs of consecutive frames, and the open mouths of the last third are kept
    # far beyond their share (the first two thirds are one closed mouth, over and over).
    starts = np.flatnonzero(np.diff(np.r_[0, keep.astype(int)]) == 1)
    ends = np.flatnonzero(np.diff(np.r_[keep.astype(int), 0]) == -1)
    assert ((ends - starts + 1) >= 10).all()
    assert keep[2000:].sum() > 2 * keep[:2000].sum()
    assert choose_kept(Track(0, 0, 9, np.zeros((10, 4)), np.ones(10), np.zeros(10),
                             np.ones(10)), 400).all()


def test_renderer_is_chosen_in_the_preset():
    assert load_config("fast").mouth.renderer == "bank"
    assert load_config("4k-film").mouth.renderer == "generator"
    with pytest.raises(UsageError, match="mouth.renderer"):
        load_config("fast", {"mouth": {"renderer": "paint"}})


# -- the warp on a real face mesh ------------------------------------------------------------

@pytest.fixture(scope="module")
def kim_points():
    """The face mesh of kim_1080p30_en's frame 40 (full-resolution pixels)."""
    if not (CLIPS / "kim_1080p30_en.mp4").is_file():
        pytest.skip("shared media not found")
    import av

    from dubber.faces.landmarks import Landmarker

    with av.open(str(CLIPS / "kim_1080p30_en.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == 40:
                img = f.to_ndarray(format="rgb24")
                break
    import cv2

    region = (764, 124, 1184, 544)  # around her face on that frame
    crop = cv2.resize(img[region[1]:region[3], region[0]:region[2]], (256, 256))
    mesh = Landmarker()
    pts = mesh.landmarks(crop, region)
    mesh.close()
    assert pts is not None
    return pts


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.uniform(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 3)
    return (t - t.min()) / (t.max() - t.min())


def test_warp_puts_a_shifted_source_back_where_the_target_face_is(kim_points):
    """A source frame that is the target frame moved by (9, -6) px, with its mesh moved
    alike: the rendered region is the target's own texture again, and nothing outside the
    region (above the nose, beyond the cheeks) is touched."""
    from dubber.media.frames import PixelLayout
    from dubber.mouth.warp import render_box, render_face

    tgt_pts = kim_points
    frame = _texture(1080, 1920)
    shift = np.array([9, -6])
    source = np.roll(frame, (shift[1], shift[0]), axis=(0, 1))
    layout = PixelLayout(1920, 1080, 8, "420")
    box = render_box(tgt_pts, layout)
    x0, y0, x1, y1 = box
    target = frame[y0:y1, x0:x1]
    src_box = (x0 - 40, y0 - 40, x1 + 40, y1 + 40)
    crop = source[src_box[1]:src_box[3], src_box[0]:src_box[2]]
    rgb, alpha = render_face(target, box, tgt_pts, [(crop, src_box, tgt_pts + shift, 1.0)],
                             MouthConfig())
    inside = alpha > 0.5
    assert inside.sum() > 2000
    err = np.abs(rgb - target)[inside].mean()
    assert err < 0.01, err
    # The region stays under the nose tip and inside the face.
    nose_row = int(tgt_pts[1, 1]) - y0
    assert alpha[:max(nose_row, 0)].max() == 0
    # Nothing reaches the face's edge (the box may start inside it, then nothing can).
    left = int(tgt_pts[[234, 132, 58, 172], 0].max()) - x0
    assert left <= 0 or alpha[:, :left].max() == 0


def test_warp_draws_the_sources_mouth_shape_not_the_targets(kim_points):
    """The source's mouth is open wider (its lower lip and chin 12 px lower): the drawn
    region shows the source's lips where the source has them."""
    from dubber.faces.landmarks import LIP_INNER, LIP_OUTER
    from dubber.media.frames import PixelLayout
    from dubber.mouth.geometry import CHIN, MOVING
    from dubber.mouth.warp import render_box, render_face

    import cv2

    tgt_pts = kim_points
    layout = PixelLayout(1920, 1080, 8, "420")
    box = render_box(tgt_pts, layout)
    x0, y0, x1, y1 = box
    src_pts = tgt_pts.copy()
    lower = [i for i in MOVING if tgt_pts[i, 1] > tgt_pts[13, 1] + 1] + list(CHIN)
    src_pts[lower, 1] += 12
    # Source image: grey, with the source's inner mouth painted black.
    source = np.full((1080, 1920, 3), 0.6, np.float32)
    cv2.fillPoly(source, [np.round(src_pts[list(LIP_INNER)]).astype(np.int32)], (0, 0, 0))
    target = np.full((y1 - y0, x1 - x0, 3), 0.6, np.float32)
    rgb, alpha = render_face(target, box, tgt_pts, [(source[y0:y1, x0:x1], box, src_pts, 1.0)],
                             MouthConfig())
    dark = (rgb.mean(-1) < 0.3) & (alpha > 0.5)
    ys, xs = np.nonzero(dark)
    assert len(ys) > 50
    mouth = np.zeros_like(dark)
    cv2.fillPoly(mouth.view(np.uint8), [np.round(src_pts[list(LIP_OUTER)] - [x0, y0]).astype(np.int32)], 1)
    # The dark opening lies inside the source's (taller) lips, and reaches below the
    # target's own lower lip.
    assert mouth[dark].mean() > 0.95
    assert ys.max() + y0 > tgt_pts[14, 1] + 6


# -- end to end --------------------------------------------------------------------------------

@needs_media
def test_dub_changes_only_the_speakers_lower_face_and_rebuilds_a_broken_bank(dub, tmp_path):
    import os
    from pathlib import Path

    clip = CLIPS / "man_map_844_en.mp4"
    out = tmp_path / "a.mkv"
    r = dub(clip, "--audio", SPEECH / "zh_news_8s.wav", "-o", out, "--codec", "ffv1", "-q")
    assert r.code == 0, r
    from dubber.faces.analyze import tracks_for_run

    tracks = tracks_for_run(clip, load_config("fast"))
    src, dst = decoded_planes(clip), decoded_planes(out)

    def lower_face(f, speakers, shape):
        # Nothing above the middle of the face box (eyes, brows, forehead), nothing far
        # outside it.
        x0, y0, x1, y1 = tracks.track(speakers[0]).box_at(f)
        pad = 0.1 * (y1 - y0)
        allowed = np.zeros(shape, bool)
        allowed[int(y0 + 0.5 * (y1 - y0)):, max(int(x0 - pad), 0):int(x1 + pad)] = True
        return allowed

    changed = frames_changed_only_where(src, dst, tracks, lower_face)
    assert changed > 0.8 * len(src)
    # A bank whose files are broken is rebuilt, and the render is the same.
    banks = Path(os.environ["DUBBER_CACHE"]) / "banks"
    for npz in banks.rglob("*.npz"):
        npz.write_bytes(b"broken")
    out2 = tmp_path / "b.mkv"
    r = dub(clip, "--audio", SPEECH / "zh_news_8s.wav", "-o", out2, "--codec", "ffv1", "-q")
    assert r.code == 0, r
    assert all(np.array_equal(p, q) for a, b in zip(dst, decoded_planes(out2))
               for p, q in zip(a, b))


@needs_media
def test_ten_bit_video_is_dubbed_in_ten_bits(dub, tmp_path):
    from dubber.media.probe import probe

    clip = tmp_path / "man10.mkv"
    ffmpeg("-i", str(CLIPS / "man_map_844_en.mp4"), "-pix_fmt", "yuv422p10le",
           "-c:v", "ffv1", "-c:a", "flac", str(clip))
    out = tmp_path / "out10.mkv"
    r = dub(clip, "--audio", SPEECH / "zh_read_4s.wav", "-o", out, "--codec", "ffv1", "-q")
    assert r.code == 0, r
    assert probe(out).bit_depth == 10 and probe(out).layout.chroma == "422"
    src, dst = decoded_planes(clip), decoded_planes(out)
    assert src[0][0].dtype == np.uint16
    diffs = [np.abs(a[0].astype(int) - b[0]) for a, b in zip(src, dst)]
    assert sum(d.any() for d in diffs) > len(src) // 2  # the mouth was re-rendered
    h = src[0][0].shape[0]
    assert all(not d[: h // 3].any() for d in diffs)  # the top of the frame is bit-exact


def test_faces_without_a_plan_go_on_to_the_fallback():
    """The mouth stage draws only the faces its plan has; the others stay in the chunk for
    the VQ generator path (an empty bank, a frame with no close bank frame)."""
    from fractions import Fraction

    from dubber.chunk import Chunk
    from dubber.faces.select import Face
    from dubber.media.frames import FrameBatch, PixelLayout
    from dubber.stages.mouth import MouthStage

    lay = PixelLayout(64, 64, 8, "420")
    frames = FrameBatch.empty(lay, 2)
    chunk = Chunk(0, np.array([5, 6]), np.array([0, 1]), Fraction(1, 25), frames)
    chunk.faces = [[Face((10, 10, 40, 40), 3)], [Face((10, 10, 40, 40), 3)]]
    stage = MouthStage({}, {})
    stage(chunk, None, load_config("fast"))
    assert [len(r) for r in chunk.faces] == [1, 1] and stage.drawn == 0
