"""Faces building blocks: crops and paste-back, tracker and cuts, tracks file, cache, S3FD."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dubber.errors import InputError, WeightsError
from dubber.faces import cache
from dubber.faces.detect import Detection
from dubber.faces.mouth_region import mouth_mask, opened_lips
from dubber.faces.shots import shots_from_cuts
from dubber.faces.tiles import tile_grid
from dubber.faces.track import Tracker, finalize_tracks
from dubber.faces.tracks_file import Shot, Track, Tracks, Window
from fractions import Fraction


def _mesh_lips(cx, top, width, height):
    """Outer lips in LIP_OUTER order: a corner, the lower lip, the other corner, the upper."""
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    return np.stack([cx + width / 2 * np.cos(a), top + height / 2 + height / 2 * np.sin(a)], 1)


def test_opened_lips_sweep_down_the_face_to_the_least_height():
    shut = _mesh_lips(100, 90, 80, 20)
    region = opened_lips(shut, 0.65)
    (x0, y0), (x1, y1) = region.min(0), region.max(0)
    assert (x0, y0, x1) == pytest.approx((60, 90, 140))  # upper lip and corners stay
    assert y1 == pytest.approx(90 + 0.65 * 80)  # swept down to 0.65 mouth widths
    inside = [cv2.pointPolygonTest(region.astype(np.float32), (float(x), float(y)), False)
              for x, y in shut]
    assert min(inside) >= 0
    # A face lying on its side (rolled 90 degrees): the sweep runs along x.
    rolled = opened_lips(shut[:, ::-1] * [-1, 1] + [300, 0], 0.65)
    assert np.ptp(rolled[:, 0]) == pytest.approx(0.65 * 80)
    assert np.ptp(rolled[:, 1]) == pytest.approx(80)
    # A mouth already open wider, or a height of 0, is not changed.
    wide = _mesh_lips(100, 90, 80, 60)
    assert np.ptp(opened_lips(wide, 0.65), axis=0) == pytest.approx(np.ptp(wide, axis=0))
    assert np.array_equal(opened_lips(shut, 0.0), shut)


def test_mouth_mask_weights_the_mouth_and_leaves_the_upper_face():
    lips = np.array([[30, 195], [50, 188], [70, 195], [50, 205]], float) + [78, 0]
    mask = mouth_mask(lips, (256, 256), feather=0.15)
    assert mask.max() > 0.99 and mask[195, 128] > 0.99  # the mouth takes the change
    assert mask[:150].max() == 0  # eyes and forehead do not
    assert mask[:, :80].max() == 0 and mask[:, 180:].max() == 0  # nor the cheeks


def test_tiles_cover_the_frame_with_overlap():
    tiles = tile_grid(960, 540, 0.6, 0.2)
    cover = np.zeros((540, 960), int)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 == y1 - y0 == 324
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1 and len(tiles) >= 6


# -- tracker and cuts ----------------------------------------------------------------------

def _run_tracker(per_frame, n):
    tr = Tracker(match_iou=0.3, max_gap=5)
    for f in range(n):
        tr.update(f, per_frame(f))
    return tr


def test_tracks_never_cross_a_cut_and_each_face_keeps_its_track():
    def faces(f):
        return [Detection((100.0 + f % 3, 100.0, 200.0 + f % 3, 200.0), 0.9),
                Detection((600.0, 100.0, 700.0, 200.0), 0.9)]

    tr = _run_tracker(faces, 60)
    shots = shots_from_cuts([30], 60)
    segs = finalize_tracks(tr.tracks, shots, (1280, 720), max_gap=5, min_track_frames=5,
                           min_face_size=0.04)
    assert len(segs) == 4  # two faces x two shots
    for s in segs:
        assert (s.first, s.last) in ((0, 29), (30, 59))
    # left face stays the left segment in each shot
    assert segs[0].boxes[:, 0].max() < 300 and segs[1].boxes[:, 0].min() > 500


def test_short_gaps_are_bridged_and_short_or_tiny_tracks_dropped():
    def faces(f):
        out = []
        if not 20 <= f < 24:  # a 4-frame miss
            out.append(Detection((100.0, 100.0, 200.0, 200.0), 0.9))
        if f < 4:  # a flash: 4 frames only
            out.append(Detection((600.0, 100.0, 700.0, 200.0), 0.9))
        out.append(Detection((900.0, 100.0, 910.0, 110.0), 0.9))  # 10 px: too small
        return out

    tr = _run_tracker(faces, 50)
    (seg,) = finalize_tracks(tr.tracks, [(0, 49)], (1280, 720), max_gap=5,
                             min_track_frames=10, min_face_size=0.04)
    assert (seg.first, seg.last) == (0, 49)
    assert (seg.scores[20:24] == 0).all() and (seg.scores[:20] > 0).all()
    assert np.allclose(seg.boxes[22], [100, 100, 200, 200], atol=1)


def test_smoothing_does_not_lag_a_face_that_moves():
    def faces(f):
        x = 100.0 + 10 * f
        return [Detection((x, 100.0, x + 100, 200.0), 0.9)]

    tr = _run_tracker(faces, 40)
    (seg,) = finalize_tracks(tr.tracks, [(0, 39)], (1280, 720), smooth_center=3, smooth_size=3)
    centre = (seg.boxes[:, 0] + seg.boxes[:, 2]) / 2
    assert np.abs(centre - (150 + 10 * np.arange(40))).max() < 0.5  # first and last frames too


# -- tracks file and cache -----------------------------------------------------------------

def _tracks(key="k"):
    n = 10
    boxes = np.tile([10.0, 20.0, 110.0, 120.0], (n, 1))
    t0 = Track(0, 0, 9, boxes, np.ones(n), np.linspace(0, 0.3, n), np.full(n, 0.4))
    t1 = Track(1, 0, 9, boxes + 300, np.ones(n), np.full(n, np.nan), np.zeros(n))
    return Tracks(640, 360, Fraction(25), 20, (t0, t1),
                  (Shot(0, 9, 0, (Window(0, 9, 0),)), Shot(10, 19)), key=key)


def test_tracks_file_round_trip_and_edits(tmp_path):
    path = tmp_path / "t.json"
    _tracks().save(path)
    data = json.loads(path.read_text())
    assert data["schema"] == "dubber.tracks/1"
    assert data["tracks"][1]["aperture"][0] is None
    back = Tracks.load(path)
    assert back.speakers_at(3) == [0] and back.speakers_at(12) == []
    np.testing.assert_allclose(back.track(0).boxes, _tracks().track(0).boxes)
    # a post-production user gives the shot to the other face
    data["shots"][0]["selected_track"] = 1
    data["shots"][0]["windows"] = []
    path.write_text(json.dumps(data))
    assert Tracks.load(path).speakers_at(3) == [1]


@pytest.mark.parametrize("edit", [
    lambda d: d["shots"][0].update(selected_track=7),
    lambda d: d["tracks"][0].update(boxes=[[0, 0, 1, 1]]),
    lambda d: d.update(schema="other"),
    lambda d: d["shots"].reverse(),
    lambda d: d["shots"][0]["windows"][0].update(end=15),
])
def test_a_broken_tracks_file_is_an_input_error(tmp_path, edit):
    path = tmp_path / "t.json"
    _tracks().save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError):
        Tracks.load(path)


def test_cache_key_follows_content_and_settings(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"x" * 999 + b"y")
    k = cache.cache_key(a, {"s": 1})
    assert k == cache.cache_key(a, {"s": 1})
    assert k != cache.cache_key(b, {"s": 1}) and k != cache.cache_key(a, {"s": 2})
    cache.store(_tracks(k), tmp_path / "c")
    assert cache.load_cached(k, tmp_path / "c").speakers_at(0) == [0]
    assert cache.load_cached("0" * 64, tmp_path / "c") is None


def test_new_sync_or_driver_weights_make_a_new_analysis(tmp_path, monkeypatch):
    """The analysis chooses speakers with the sync model and calibrates them with the mouth
    driver: weights of another content (a new training) must not reuse a stale analysis."""
    import shutil

    from dubber.config import load_config
    from dubber.faces.analyze import analysis_models
    from dubber.models.registry import REPO_WEIGHTS_DIR

    cfg = load_config("fast")
    shipped = analysis_models(cfg)
    assert set(shipped) == {"lip-sync", "mouth-driver"}
    w = tmp_path / "w"
    shutil.copytree(REPO_WEIGHTS_DIR, w)
    text = (w / "manifest.yaml").read_text()
    (w / "manifest.yaml").write_text(text.replace(shipped["lip-sync"], "f" * 64))
    monkeypatch.setenv("DUBBER_WEIGHTS", str(w))
    other = analysis_models(cfg)
    assert other["lip-sync"] == "f" * 64 and other["mouth-driver"] == shipped["mouth-driver"]


# -- S3FD ----------------------------------------------------------------------------------

def test_s3fd_without_its_weights_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from dubber.faces.detect import make_detector

    with pytest.raises(WeightsError) as err:
        make_detector("s3fd")
    assert "s3fd-619a316812.pth" in str(err.value)
    assert str(tmp_path / "hub" / "checkpoints") in str(err.value)


def test_s3fd_runs_from_the_torch_hub_cache(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("face_alignment")
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from dubber.faces.detect import Detection as Det
    from dubber.faces.detect import make_detector

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), folder / "s3fd-619a316812.pth")  # random, right shapes
    det = make_detector("s3fd", min_score=0.0)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    found = det.detect(image)
    assert isinstance(found, list) and all(isinstance(d, Det) for d in found)
    assert all(0 <= d.score <= 1 for d in found)
    # a file that is not an S3FD state dict is refused with a clear error
    torch.save({"conv1_1.weight": torch.zeros(1)}, folder / "s3fd-619a316812.pth")
    with pytest.raises(WeightsError):
        make_detector("s3fd")


# -- YUV crops for the face mesh -------------------------------------------------------------

@pytest.mark.parametrize("pix_fmt,spec", [("yuv420p", ("bt709", False)),
                                          ("yuv422p10le", ("bt601", True))])
def test_mesh_crops_match_the_media_colour_conversion(pix_fmt, spec):
    from dubber.faces.yuv import crop_rgb
    from dubber.media.color import ColorSpec, yuv_region_to_rgb
    from dubber.media.frames import FrameBatch, PixelLayout

    lay = PixelLayout.from_pix_fmt(pix_fmt, 64, 48)
    rng = np.random.default_rng(1)
    cw, ch = lay.chroma_size
    top = lay.max_value
    y = rng.integers(0, top + 1, (1, 48, 64)).astype(lay.dtype)
    u = rng.integers(0, top + 1, (1, ch, cw)).astype(lay.dtype)
    v = rng.integers(0, top + 1, (1, ch, cw)).astype(lay.dtype)
    frames = FrameBatch.from_arrays(lay, y, u, v)
    cs = ColorSpec(*spec)
    region = (6, 4, 38, 36)
    want = yuv_region_to_rgb(frames, 0, region, cs) * 255
    got = crop_rgb(frames, 0, region, spec=cs).astype(np.float32)
    assert np.abs(got - want).max() <= 1.0
    small = crop_rgb(frames, 0, region, out_size=16, spec=cs)
    assert small.shape == (16, 16, 3) and small.dtype == np.uint8
