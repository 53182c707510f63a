"""A full-range picture stored two ways (yuvj420p as H.264 decodes it, yuv420p flagged "pc"
as FFV1 writes it) is the same picture: to bench quality, and to the analysis pass's small
RGB copies, which the face detector and the face mesh read."""

import av
import numpy as np

from dubber.bench.quality import _luma
from dubber.media.decode import read_chunks, to_rgb
from dubber.media.probe import probe
from tests.helpers import ffmpeg


def _full_range_pair(tmp_path):
    rng = np.random.default_rng(0)
    w, h, n = 64, 48, 3
    raw = rng.integers(0, 256, (n, h * w * 3 // 2), dtype=np.uint8)  # Y 0-255: full range
    (tmp_path / "raw.yuv").write_bytes(raw.tobytes())
    common = ("-f", "rawvideo", "-s", f"{w}x{h}", "-r", "25")
    a, b = tmp_path / "j.mkv", tmp_path / "pc.mkv"
    ffmpeg(*common, "-pix_fmt", "yuvj420p", "-i", str(tmp_path / "raw.yuv"),
           "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuvj420p", str(a))
    ffmpeg(*common, "-pix_fmt", "yuv420p", "-color_range", "pc", "-i", str(tmp_path / "raw.yuv"),
           "-c:v", "ffv1", "-pix_fmt", "yuv420p", "-color_range", "pc", str(b))
    return raw.reshape(n, -1)[:, : w * h].reshape(n, h, w), a, b


def test_the_same_full_range_picture_reads_the_same_however_it_is_flagged(tmp_path):
    y, a, b = _full_range_pair(tmp_path)
    with av.open(str(b)) as c:  # the case: FFV1 keeps the code values under a "pc" flag
        f = next(c.decode(video=0))
        assert f.format.name == "yuv420p" and int(f.color_range) == 2
    la, lb = _luma(a), _luma(b)
    assert len(la) == len(lb) == len(y)
    for i in range(len(y)):
        assert np.array_equal(la[i], y[i]) and np.array_equal(lb[i], y[i])  # unchanged: 0 px
    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        for fa, fb in zip(ca.decode(video=0), cb.decode(video=0)):
            # converted as limited range (swscale's default), the pc picture gains contrast
            plain = fb.to_ndarray(format="rgb24").astype(int)
            ra, rb = to_rgb(fa).astype(int), to_rgb(fb).astype(int)
            assert np.abs(ra - rb).max() <= 1
            assert np.abs(plain - ra).mean() > 5


def test_the_analysis_pass_sees_a_full_range_picture_as_full_range_however_flagged(tmp_path):
    _, a, b = _full_range_pair(tmp_path)
    small = [np.concatenate([c.analysis for c in read_chunks(probe(p), analysis_scale=0.5,
                                                               full=False)]).astype(int)
             for p in (a, b)]
    assert small[0].shape == small[1].shape == (3, 24, 32, 3)
    assert np.abs(small[0] - small[1]).max() <= 1
    # the yuvj420p file's copy is not itself misread: its dark and light ends reach 0 / 255
    assert small[0].min() <= 10 and small[0].max() >= 245
