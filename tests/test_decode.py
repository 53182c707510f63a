"""Chunked decoding: bounded chunks, exact frames and timestamps, analysis copies."""

from __future__ import annotations

import gc
import resource

import numpy as np
import pytest

from dubber.media.decode import read_chunks
from dubber.media.probe import probe
from tests.helpers import decoded_planes, make_clip, video_pts


def test_chunks_cover_every_frame_once_in_order(gen):
    clip = make_clip(gen / "d_50.mp4", seconds=2, audio=False)
    info = probe(clip)
    chunks = list(read_chunks(info, chunk_frames=7))
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    indices = np.concatenate([c.frame_indices for c in chunks])
    assert indices.tolist() == list(range(50))
    pts = np.concatenate([c.pts for c in chunks])
    ref = video_pts(clip)
    assert pts.tolist() == [p - ref[0] for p in ref]
    # The planes are the decoder's frames, unchanged.
    ref_planes = decoded_planes(clip, limit=9)
    got = chunks[1].frames.planes(1)  # frame 8
    for a, b in zip(got, ref_planes[8]):
        assert np.array_equal(a, b)


def test_analysis_copy_is_reduced_rgb_of_the_frame(gen):
    red = make_clip(gen / "red.mp4", size="640x360", source="color=c=red", seconds=0.2,
                    audio=False)
    info = probe(red)
    chunk = next(iter(read_chunks(info, chunk_frames=4, analysis_scale=0.25)))
    assert chunk.analysis.shape == (4, 90, 160, 3) and chunk.analysis.dtype == np.uint8
    mean = chunk.analysis.reshape(-1, 3).mean(0)
    assert mean[0] > 230 and mean[1] < 25 and mean[2] < 25
    y, u, v = chunk.frames.planes(0)
    assert y.shape == (360, 640) and u.shape == (180, 320)
    assert abs(int(np.median(v)) - 240) <= 3  # BT.601 limited-range red: V = 240


def test_analysis_only_pass_has_no_full_frames(clip_320):
    info = probe(clip_320)
    chunks = list(read_chunks(info, chunk_frames=10, analysis_scale=0.5, full=False))
    assert sum(len(c) for c in chunks) == info.frame_count
    assert all(c.frames is None and c.analysis.shape[1:] == (120, 160, 3) for c in chunks)


def test_ten_bit_frames_arrive_as_uint16(gen):
    clip = make_clip(gen / "d_10bit.mp4", pix_fmt="yuv422p10le", audio=False, seconds=0.2)
    info = probe(clip)
    chunk = next(iter(read_chunks(info, chunk_frames=2)))
    y, u, v = chunk.frames.planes(0)
    assert y.dtype == np.uint16 and u.shape == (240, 160)  # 4:2:2: full-height chroma
    assert y.max() > 255 and y.max() <= 1023


def test_odd_size_keeps_every_pixel(gen):
    clip = make_clip(gen / "odd.mp4", size="1918x1078", audio=False, seconds=0.12)
    info = probe(clip)
    chunk = next(iter(read_chunks(info, chunk_frames=3)))
    y, u, _ = chunk.frames.planes(2)
    assert y.shape == (1078, 1918) and u.shape == (539, 959)
    assert np.array_equal(y, decoded_planes(clip, limit=3)[2][0])


def test_writing_a_frame_does_not_disturb_the_decoder(gen):
    """Copy-on-write: painting frame 0 must not leak into frames decoded after it."""
    clip = make_clip(gen / "cow.mp4", seconds=1, audio=False)
    info = probe(clip)
    ref = decoded_planes(clip)
    seen = []
    for chunk in read_chunks(info, chunk_frames=4):
        for i in range(len(chunk)):
            if chunk.frame_indices[i] % 4 == 0:
                chunk.frames.writable_planes(i)[0][:] = 0
            seen.append(chunk.frames.planes(i)[0].copy())
    for k, y in enumerate(seen):
        if k % 4 == 0:
            assert not y.any()
        else:
            assert np.array_equal(y, ref[k][0]), f"frame {k} changed"


def test_planes_are_read_only_unless_asked(clip_320):
    chunk = next(iter(read_chunks(probe(clip_320), chunk_frames=2)))
    with pytest.raises(ValueError):
        chunk.frames.planes(0)[0][0, 0] = 1


def test_memory_is_bounded_by_the_chunk_not_the_video(gen):
    """300 frames of 1080p are 930 MB decoded; a chunked pass must hold a few chunks only."""
    clip = make_clip(gen / "long1080.mp4", size="1920x1080", seconds=12, audio=False,
                     source="testsrc2")
    info = probe(clip)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = 0
    for chunk in read_chunks(info, chunk_frames=8):
        total += len(chunk)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert total == 300
    assert after - before < 300 * 2**20, f"peak grew by {(after - before) / 2**20:.0f} MB"
