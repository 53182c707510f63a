"""probe(): the typed description of every real clip and of generated odd formats."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from dubber.errors import InputError
from dubber.media.probe import probe
from tests.helpers import (ffmpeg, make_clip, make_tone, media_clips, needs_media,
                           video_pts)


@needs_media
@pytest.mark.parametrize("clip", media_clips(), ids=lambda p: p.name)
def test_every_real_clip_probes_to_what_the_decoder_delivers(clip):
    info = probe(clip)
    with av.open(str(clip)) as c:
        frames = list(c.decode(video=0))
    assert info.frame_count == len(frames)
    assert (info.width, info.height) == (frames[0].width, frames[0].height)
    assert info.frame_rate > 0 and isinstance(info.frame_rate, Fraction)
    # Constant-rate clips: duration is frames / rate, to the tick.
    if not info.is_vfr:
        assert abs(info.duration - info.frame_count / info.frame_rate) <= info.frame_duration
    assert info.bit_depth == 8 and info.layout.pix_fmt == "yuv420p"
    assert info.codec in ("h264", "hevc", "mpeg4")


@needs_media
def test_real_clips_report_their_codecs_audio_and_colour():
    from tests.helpers import CLIPS
    hevc = probe(CLIPS / "man_portrait1080_hevc25.mp4")
    assert hevc.codec == "hevc" and (hevc.width, hevc.height) == (1080, 1920)
    assert hevc.color.matrix == "bt709" and hevc.color.range == "tv"
    assert probe(CLIPS / "katie_512_mpeg4_en.mp4").codec == "mpeg4"
    assert probe(CLIPS / "glasses_selfie_noaudio.mp4").audio == ()
    mov = probe(CLIPS / "youtuber_cutaway_720p30.mov")  # audio stream comes first
    assert mov.stream_index == 1 and mov.audio[0].index == 0
    kim = probe(CLIPS / "kim_1080p30_en.mp4")
    assert kim.frame_rate == 30 and kim.audio[0].sample_rate == 44100
    assert kim.audio[0].channels == 2


def test_ntsc_rates_are_exact_fractions(gen):
    for rate, expected in (("24000/1001", Fraction(24000, 1001)),
                           ("30000/1001", Fraction(30000, 1001))):
        clip = make_clip(gen / f"rate_{expected.numerator}.mp4", rate=rate, seconds=0.5,
                         audio=False)
        info = probe(clip)
        assert info.frame_rate == expected
        assert not info.is_vfr
        assert info.duration == info.frame_count / expected


def test_ten_bit_and_colour_metadata(gen):
    clip = make_clip(gen / "tenbit.mp4", pix_fmt="yuv420p10le", audio=False, extra_out=(
        "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc",
        "-color_range", "tv"))
    info = probe(clip)
    assert info.bit_depth == 10 and info.layout.pix_fmt == "yuv420p10le"
    assert (info.color.primaries, info.color.transfer, info.color.matrix, info.color.range) == (
        "bt2020", "arib-std-b67", "bt2020nc", "tv")


def test_rotation_metadata(gen, clip_320):
    rotated = gen / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(clip_320), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert info.rotation == 90
    assert (info.width, info.height) == (320, 240) and info.display_size == (240, 320)


def test_variable_frame_rate_is_detected_with_exact_duration(gen):
    vfr = make_vfr_clip(gen)
    info = probe(vfr)
    pts = video_pts(vfr)
    assert info.is_vfr
    assert info.frame_count == len(pts)
    last = pts[-1] - pts[0]
    assert last * info.time_base < info.duration <= (last + max(
        b - a for a, b in zip(pts, pts[1:]))) * info.time_base


def make_vfr_clip(gen):
    """25 fps for 1 s, then 10 fps for 1 s, in one mkv stream."""
    path = gen / "vfr.mkv"
    if not path.exists():
        a, b = gen / "vfr_a.mkv", gen / "vfr_b.mkv"
        make_clip(a, rate="25", seconds=1, audio=False, codec="libx264")
        make_clip(b, rate="10", seconds=1, audio=False, codec="libx264", source="smptebars")
        lst = gen / "vfr.txt"
        lst.write_text(f"file '{a}'\nfile '{b}'\n")
        ffmpeg("-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", str(path))
    return path


@pytest.mark.parametrize("pix_fmt,size", [("yuv420p", "321x241"), ("yuv420p", "320x241"),
                                           ("yuv422p", "321x240"), ("yuv444p", "321x241")])
def test_odd_sizes_keep_their_chroma_subsampling(gen, pix_fmt, size):
    """The working layout is the decoder's own subsampling at any size (4:2:0 at 321x241
    has 161x121 chroma planes, not a 4:4:4 picture)."""
    w, h = map(int, size.split("x"))
    # (lavfi's test sources round an odd size down: the odd size is made by a scale)
    clip = make_clip(gen / f"odd_{pix_fmt}_{size}.mkv", codec="ffv1", pix_fmt=pix_fmt,
                     seconds=0.2, audio=False, extra_out=("-vf", f"scale={w}:{h}"))
    info = probe(clip)
    assert info.layout.pix_fmt == pix_fmt and (info.width, info.height) == (w, h)


def test_missing_empty_and_folder_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        probe(tmp_path / "empty.mp4")
    with pytest.raises(InputError, match="folder"):
        probe(tmp_path)


def test_not_a_video(tmp_path, gen):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(InputError, match="not a video file"):
        probe(text)
    with pytest.raises(InputError, match="no video stream"):
        probe(make_tone(tmp_path / "tone.wav", 0.5))
    png = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(png))
    with pytest.raises(InputError, match="still image"):
        probe(png)


def test_truncated_file_is_rejected(tmp_path, clip_320):
    data = clip_320.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|corrupt|not a video"):
        probe(cut)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".ts"])
def test_timestamps_starting_late_are_not_truncation(tmp_path, clip_320, suffix):
    """A whole file whose timestamps start at 10 s (an mkv's header then states 11 s, the
    end time) probes as the 1 s it is."""
    late = tmp_path / f"late{suffix}"
    ffmpeg("-i", str(clip_320), "-c", "copy", "-output_ts_offset", "10", str(late))
    info = probe(late)
    assert info.frame_count == 25 and info.duration == 1
    assert info.start_pts * info.time_base >= 9


def _first_60_percent(path, tmp_path):
    """A copy of ``path`` cut after 60 % of its bytes."""
    cut = tmp_path / f"cut_{path.name}"
    data = path.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    return cut


def test_truncated_mkv_starting_late_is_rejected(tmp_path, clip_320):
    late = tmp_path / "late.mkv"
    ffmpeg("-i", str(clip_320), "-c", "copy", "-output_ts_offset", "10", str(late))
    with pytest.raises(InputError, match="truncated|corrupt"):
        probe(_first_60_percent(late, tmp_path))


def test_truncated_faststart_file_is_rejected(tmp_path, clip_320):
    # With the index at the front, the header survives and lists frames that are missing.
    fs = tmp_path / "faststart.mp4"
    ffmpeg("-i", str(clip_320), "-c", "copy", "-movflags", "+faststart", str(fs))
    with pytest.raises(InputError, match="truncated|corrupt"):
        probe(_first_60_percent(fs, tmp_path))
