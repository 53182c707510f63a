"""The watermark scheme: invisible-watermark compatibility both ways, speed, the codeword,
the face-aligned embedding (what changes, how much, what survives) and false matches."""

from __future__ import annotations

import time
from fractions import Fraction
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest

from dubber import watermark as wm
from dubber.chunk import Chunk
from dubber.config import load_config
from dubber.errors import UsageError
from dubber.media.frames import FrameBatch, PixelLayout
from dubber.stages.watermark import watermark_faces
from tests.faces_media import clip

# kim_1080p30_en: her face box on frame 0 (from the analysis), x0, y0, x1, y1.
KIM_BOX = (797.0, 184.3, 1153.4, 540.7)
PAYLOAD = "d0bbe125"


def _kim_frames(n: int = 1, step: int = 1) -> list[av.VideoFrame]:
    with av.open(str(clip("kim_1080p30_en.mp4"))) as c:
        out = []
        for k, f in enumerate(c.decode(video=0)):
            if k % step == 0:
                out.append(f.reformat(format="yuv420p"))
            if len(out) == n:
                return out
    return out


def _kim_crop() -> np.ndarray:
    """A real 768x768 BGR crop around kim's face."""
    bgr = _kim_frames(1)[0].to_ndarray(format="bgr24")
    return np.ascontiguousarray(bgr[100:868, 600:1368])


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


# --------------------------------------------------- invisible-watermark compatibility


def test_we_decode_invisible_watermark_and_it_decodes_us():
    imw = pytest.importorskip("imwatermark")
    crop = _kim_crop()
    bits = np.random.default_rng(7).integers(0, 2, 48)
    enc = imw.WatermarkEncoder()
    enc.set_by_bits(list(bits))
    dec = imw.WatermarkDecoder("bits", len(bits))
    theirs = enc.encode(crop, "dwtDctSvd")
    ours = wm.encode_bgr(crop, bits)
    assert np.array_equal(wm.decode_bgr(theirs, len(bits)), bits.astype(bool))
    assert np.array_equal(np.asarray(dec.decode(ours, "dwtDctSvd"), bool), bits.astype(bool))
    assert np.array_equal(wm.decode_bgr(ours, len(bits)), bits.astype(bool))
    # On an unmarked crop both read the same (meaningless) bits: the same scheme.
    assert np.array_equal(wm.decode_bgr(crop, len(bits)),
                          np.asarray(dec.decode(crop, "dwtDctSvd"), bool))
    # The nearest-point quantisation changes the crop less than theirs.
    assert _psnr(ours, crop) > _psnr(theirs, crop) + 1.5


def test_batched_crops_and_other_scales_match_one_by_one():
    imw = pytest.importorskip("imwatermark")
    crops = np.stack([_kim_crop(), np.ascontiguousarray(_kim_crop()[:, ::-1])])
    bits = np.random.default_rng(3).integers(0, 2, 32)
    marked = wm.encode_bgr(crops, bits, scales=(0, 24, 0))
    dec = imw.WatermarkDecoder("bits", len(bits))
    for m in marked:
        got = np.asarray(dec.decode(m, "dwtDctSvd", scales=[0, 24, 0]), bool)
        assert np.array_equal(got, bits.astype(bool))
    assert np.array_equal(wm.decode_bgr(marked, len(bits), scales=(0, 24, 0)),
                          np.tile(bits.astype(bool), (2, 1)))


def test_top_singular_matches_an_exact_svd():
    rng = np.random.default_rng(0)
    blocks = np.concatenate([rng.random((500, 4, 4)) * 200,          # textured
                             np.ones((50, 4, 4)) * 100 + rng.random((50, 4, 4)),  # flat
                             rng.normal(0, 1, (50, 4, 4))])            # zero-mean: no gap
    s0, u, v = wm.top_singular(np.moveaxis(blocks, (1, 2), (0, 1)))
    exact = np.linalg.svd(blocks, compute_uv=False)[:, 0]
    np.testing.assert_allclose(s0, exact, rtol=1e-4, atol=1e-3)
    # s0 u v^T is the best rank-one part: what is left has the second singular value.
    rank1 = s0[:, None, None] * np.einsum("km,im->mki", u, v)
    resid = np.linalg.norm(blocks - rank1, ord=2, axis=(1, 2))
    second = np.linalg.svd(blocks, compute_uv=False)[:, 1]
    np.testing.assert_allclose(resid, second, rtol=1e-3, atol=1e-2)


def test_ours_is_at_least_ten_times_faster_per_768_crop():
    imw = pytest.importorskip("imwatermark")
    crop = _kim_crop()
    bits = list(np.random.default_rng(1).integers(0, 2, 64))
    enc = imw.WatermarkEncoder()
    enc.set_by_bits(bits)
    dec = imw.WatermarkDecoder("bits", 64)

    def best_of(fn, n=4):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)  # the least disturbed run on a shared CPU

    assert best_of(lambda: enc.encode(crop, "dwtDctSvd"), 3) >= 10 * best_of(
        lambda: wm.encode_bgr(crop, bits))
    assert best_of(lambda: dec.decode(crop, "dwtDctSvd"), 3) >= 10 * best_of(
        lambda: wm.decode_bgr(crop, 64))


# ------------------------------------------------------------------------ the codeword


def test_codeword_carries_payload_and_check_bits():
    code = wm.codeword(PAYLOAD)
    assert code.shape == (wm.N_BITS,) and set(np.unique(code)) <= {0, 1}
    assert wm.payload_of(code) == PAYLOAD
    assert wm.codeword(0xD0BBE125).tolist() == code.tolist()
    # One flipped bit anywhere breaks the check: a decoder cannot invent a payload.
    for k in (0, 31, 32, 63):
        bad = code.copy()
        bad[k] ^= 1
        assert wm.payload_of(bad) is None
    # Neighbouring payloads differ in many bits (the check bits are a hash).
    assert (wm.codeword("d0bbe124") != code).sum() > 10
    assert wm.payload_of(np.zeros(64, np.uint8)) is None
    assert wm.false_match_rate(12) < 1e-2 and wm.false_match_rate(6) < 1e-6


@pytest.mark.parametrize("bad", ["", "d0bbe12", "d0bbe1255", "xyz12345", "-1"])
def test_bad_payloads_are_refused(bad):
    with pytest.raises(ValueError):
        wm.parse_payload(bad)
    with pytest.raises(UsageError):
        load_config("unittest", {"watermark": {"payload": bad}})


def test_config_checks_strength_and_threshold():
    with pytest.raises(UsageError):
        load_config("unittest", {"watermark": {"strength": 0.5}})
    with pytest.raises(UsageError):
        load_config("unittest", {"watermark": {"max_bit_errors": 40}})
    assert load_config("fast").watermark.payload == PAYLOAD


# ------------------------------------------------------------- the stage, in a chunk


def _chunk(frames: list[av.VideoFrame], boxes, bit_depth: int = 8) -> Chunk:
    lay = PixelLayout(frames[0].width, frames[0].height, bit_depth, "420")
    planes = [_planes(f, bit_depth) for f in frames]
    batch = FrameBatch.from_arrays(lay, *(np.stack([p[k] for p in planes]) for k in range(3)))
    n = len(frames)
    faces = [[SimpleNamespace(box=b, track_id=0)] if b is not None else [] for b in boxes]
    return Chunk(0, np.arange(n), np.arange(n), Fraction(1, 30), batch, faces=faces)


def _planes(f: av.VideoFrame, bit_depth: int) -> list[np.ndarray]:
    """Y, U, V of a yuv420p frame, shifted up to ``bit_depth``."""
    arr = f.to_ndarray()
    h, w = f.height, f.width
    uv = arr[h:].reshape(2, h // 2, w // 2)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return [p.astype(dtype) << (bit_depth - 8) for p in (arr[:h], uv[0], uv[1])]


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_stage_marks_only_the_faces_invisibly_and_survives_box_jitter(bit_depth):
    frames = _kim_frames(3, step=30)
    chunk = _chunk(frames, [KIM_BOX, KIM_BOX, None], bit_depth)
    before = [tuple(p.copy() for p in chunk.frames.planes(i)) for i in range(len(frames))]
    cfg = load_config("fast")
    watermark_faces(chunk, None, cfg)
    peak = float((1 << bit_depth) - 1)
    code = wm.codeword(cfg.watermark.payload)
    sq = wm.FaceSquare.from_box(KIM_BOX)
    r = np.hypot(*np.meshgrid(np.arange(1920) + 0.5 - (sq.x0 + sq.side / 2),
                              np.arange(1080) + 0.5 - (sq.y0 + sq.side / 2)))
    for i in range(len(frames)):
        y, u, v = chunk.frames.planes(i)
        assert np.array_equal(u, before[i][1]) and np.array_equal(v, before[i][2])
        changed = y != before[i][0]
        if i == 2:  # no face: untouched
            assert not changed.any()
            continue
        assert changed.sum() > 0.3 * sq.side ** 2
        assert r[changed].max() <= sq.side / 2 * wm.DISC_ZERO + 2  # inside the disc only
        face = np.s_[sq.y0: sq.y0 + sq.side, sq.x0: sq.x0 + sq.side]
        assert _psnr(y[face], before[i][0][face], peak) >= 40.0
        # Re-detection gives another box: 3% bigger, moved by 2% of the face.
        x0, y0, x1, y1 = KIM_BOX
        d = 0.02 * (x1 - x0)
        jittered = (x0 - 0.015 * (x1 - x0) + d, y0 - d, x1 + 0.015 * (x1 - x0) + d, y1)
        unit = float(1 << (bit_depth - 8))
        reading = wm.decode_face(y, jittered, code, cfg.watermark.strength, unit)
        assert reading.errors <= 2
        assert wm.payload_of(reading.bits) in (cfg.watermark.payload, None)
        # The unmarked frame does not read as the payload.
        plain = wm.decode_face(before[i][0], jittered, code, cfg.watermark.strength, unit)
        assert plain.errors > cfg.watermark.max_bit_errors


def test_disabled_stage_and_faces_off_frame_change_nothing():
    frames = _kim_frames(2)
    off = (-900.0, -900.0, -500.0, -500.0)
    chunk = _chunk(frames, [KIM_BOX, off])
    before = [chunk.frames.planes(i)[0].copy() for i in range(2)]
    watermark_faces(chunk, None, load_config("fast", {"watermark": {"enabled": False}}))
    assert all(np.array_equal(chunk.frames.planes(i)[0], before[i]) for i in range(2))
    watermark_faces(chunk, None, load_config("fast"))
    assert not np.array_equal(chunk.frames.planes(0)[0], before[0])
    assert np.array_equal(chunk.frames.planes(1)[0], before[1])


def test_mark_survives_jpeg_like_requantisation_and_half_size():
    """A marked face, re-quantised by JPEG at quality 70, then shrunk to half size: the
    search finds the grid again with a box scaled by the same half."""
    y = _kim_frames(1)[0].to_ndarray()[:1080].copy()
    code = wm.codeword(PAYLOAD)
    strength = load_config("fast").watermark.strength
    wm.embed_faces([y], [wm.FaceSquare.from_box(KIM_BOX)], code, strength)
    ok, buf = cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, 70])
    small = cv2.resize(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), (960, 540),
                       interpolation=cv2.INTER_AREA)
    box = tuple(v / 2 for v in KIM_BOX)
    assert wm.decode_face(small, box, code, strength).errors <= 6


def test_unmarked_real_faces_do_not_read_as_the_payload():
    """Faces of every shared clip frame we sample, unmarked: the best alignment of the
    search stays far from the payload's codeword."""
    from dubber.faces.detect import make_detector

    cfg = load_config("fast")
    code = wm.codeword(cfg.watermark.payload)
    det = make_detector("mediapipe", 0.5)
    worst = wm.N_BITS
    try:
        for name in ("kim_1080p30_en.mp4", "man_map_844_en.mp4", "woman_glasses_524_en.mp4"):
            with av.open(str(clip(name))) as c:
                for k, f in enumerate(c.decode(video=0)):
                    if k % 20:
                        continue
                    rgb = f.to_ndarray(format="rgb24")
                    luma = f.to_ndarray(format="gray")
                    for d in det.detect(rgb):
                        r = wm.decode_face(luma, d.box, code, cfg.watermark.strength)
                        worst = min(worst, r.errors)
    finally:
        det.close()
    assert worst < wm.N_BITS  # faces were read
    assert worst > cfg.watermark.max_bit_errors
