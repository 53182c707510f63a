"""``dub INPUT --audio DUB``: the pass-through render, end to end, through the real CLI."""

from __future__ import annotations

import hashlib
import os
import stat
from fractions import Fraction

import av
import numpy as np
import pytest

from dubber.media.probe import probe
from tests.helpers import (CLIPS, SPEECH, audio_streams, decoded_planes, ffmpeg, make_clip,
                           make_tone, media_clips, needs_media, video_pts, video_time_base)

FAST = ("--preset", "unittest", "--passthrough", "-q")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_picture_timeline(src, out):
    a, b = probe(src), probe(out)
    assert b.frame_count == a.frame_count
    assert abs(b.duration - a.duration) <= a.frame_duration
    assert (b.width, b.height) == (a.width, a.height)
    return a, b


@needs_media
@pytest.mark.parametrize("clip", media_clips(), ids=lambda p: p.name)
def test_every_real_clip_round_trips_with_the_dub(dub, tmp_path, clip):
    out = tmp_path / "out.mp4"
    before = sha(clip)
    r = dub(clip, "--audio", SPEECH / "en_kimk_8s.mp3", "-o", out, *FAST)
    assert r.code == 0, r
    a, b = assert_same_picture_timeline(clip, out)
    assert (b.pix_fmt, b.color, b.rotation) == (a.pix_fmt, a.color, a.rotation)
    # Relative timestamps are kept frame for frame.
    ta, tb_ = video_pts(clip), video_pts(out)
    tba, tbb = video_time_base(clip), video_time_base(out)
    assert [(p - ta[0]) * tba for p in ta] == [(p - tb_[0]) * tbb for p in tb_]
    streams = audio_streams(out)
    assert len(streams) == 1 and streams[0]["title"] == "Dub"
    assert abs(streams[0]["duration"] - float(a.duration)) < 0.05  # padded or cut to fit
    assert sha(clip) == before  # the input is never touched


def test_4k_ten_bit_keeps_depth_and_colour(dub, gen, tmp_path):
    clip = make_clip(gen / "uhd10.mp4", size="3840x2160", seconds=0.2, pix_fmt="yuv420p10le",
                     extra_out=("-color_primaries", "bt2020", "-color_trc", "smpte2084",
                                "-colorspace", "bt2020nc", "-color_range", "tv"))
    out = tmp_path / "uhd10_out.mp4"
    r = dub(clip, "--audio", gen / "tone_3s.wav" if (gen / "tone_3s.wav").exists()
            else make_tone(gen / "tone_3s.wav", 3), "-o", out, *FAST, "--codec", "x265")
    assert r.code == 0, r
    a, b = assert_same_picture_timeline(clip, out)
    assert (b.width, b.height, b.pix_fmt, b.codec) == (3840, 2160, "yuv420p10le", "hevc")
    assert b.color == a.color


def test_ten_bit_x264_output(dub, gen, tone_3s, tmp_path):
    clip = make_clip(gen / "ten422.mp4", pix_fmt="yuv422p10le", seconds=0.4)
    out = tmp_path / "o.mp4"
    assert dub(clip, "--audio", tone_3s, "-o", out, *FAST).code == 0
    assert probe(out).pix_fmt == "yuv422p10le"


def test_ffv1_output_is_bit_exact_to_the_input(dub, gen, tone_3s, tmp_path):
    """Pass-through leaves every pixel as decoded: with a lossless codec, exactly."""
    clip = make_clip(gen / "odd_size.mp4", size="1918x1078", seconds=0.3)
    out = tmp_path / "lossless.mkv"
    assert dub(clip, "--audio", tone_3s, "-o", out, "--codec", "ffv1", *FAST).code == 0
    src, dst = decoded_planes(clip), decoded_planes(out)
    assert len(src) == len(dst) >= 7
    for fa, fb in zip(src, dst):
        for pa, pb in zip(fa, fb):
            assert np.array_equal(pa, pb)


@pytest.mark.parametrize("size", ["321x241", "320x241", "321x240"])
def test_odd_size_420_stays_420_at_its_size_bit_exact(dub, gen, tone_3s, tmp_path, size):
    """4:2:0 at an odd size (chroma planes ceil(w/2) x ceil(h/2)) is carried as 4:2:0, not
    turned into 4:4:4: a lossless pass-through gives back every plane exactly."""
    w, h = map(int, size.split("x"))
    clip = make_clip(gen / f"odd_{size}.mkv", codec="ffv1", seconds=0.3,
                     extra_out=("-vf", f"scale={w}:{h}"))
    out = tmp_path / "odd.mkv"
    assert dub(clip, "--audio", tone_3s, "-o", out, "--codec", "ffv1", *FAST).code == 0
    a, b = assert_same_picture_timeline(clip, out)
    assert b.pix_fmt == a.pix_fmt == "yuv420p"
    src, dst = decoded_planes(clip), decoded_planes(out)
    assert src[0][1].shape == ((h + 1) // 2, (w + 1) // 2)
    for fa, fb in zip(src, dst):
        for pa, pb in zip(fa, fb):
            assert np.array_equal(pa, pb)


def test_odd_size_420_in_x264_keeps_its_size_with_a_warning(dub, gen, tone_3s, tmp_path):
    """H.264 cannot code 4:2:0 at an odd size: the picture keeps its size in 4:4:4, and the
    user is told (and which codecs keep 4:2:0)."""
    clip = make_clip(gen / "odd_321x241.mkv", codec="ffv1", seconds=0.3,
                     extra_out=("-vf", "scale=321:241"))
    out = tmp_path / "odd.mp4"
    r = dub(clip, "--audio", tone_3s, "-o", out, "--preset", "unittest", "--passthrough")
    assert r.code == 0, r
    assert "odd size 321x241" in r.err and "ffv1" in r.err
    info = probe(out)
    assert (info.width, info.height, info.pix_fmt) == (321, 241, "yuv444p")


def test_prores_output_in_mov(dub, clip_320, tone_3s, tmp_path):
    out = tmp_path / "master.mov"
    assert dub(clip_320, "--audio", tone_3s, "-o", out, "--codec", "prores", *FAST).code == 0
    info = probe(out)
    assert info.codec == "prores" and info.pix_fmt == "yuv422p10le"
    assert audio_streams(out)[0]["codec"].startswith("pcm")
    r = dub(clip_320, "--audio", tone_3s, "-o", tmp_path / "x.mp4", "--codec", "prores", *FAST)
    assert r.code == 2 and ".mov" in r.err


def test_variable_frame_rate_keeps_every_timestamp(dub, gen, tone_3s, tmp_path):
    from tests.test_probe import make_vfr_clip
    clip = make_vfr_clip(gen)
    for suffix in (".mkv", ".mp4"):
        out = tmp_path / f"vfr_out{suffix}"
        assert dub(clip, "--audio", tone_3s, "-o", out, *FAST).code == 0
        ta, tb = video_pts(clip), video_pts(out)
        tba, tbb = video_time_base(clip), video_time_base(out)
        assert [(p - ta[0]) * tba for p in ta] == [(p - tb[0]) * tbb for p in tb]
        assert probe(out).is_vfr


def make_jittered_clip(gen):
    """2 s at 25 fps, each frame but every third one 13 ms late, in Matroska (1 ms time
    base): intervals of 27, 40 and 53 ms, a nominal rate of 1000 fps."""
    path = gen / "jitter.mkv"
    if not path.exists():
        src = make_clip(gen / "jitter_src.mp4", seconds=2, audio=False)
        ffmpeg("-i", str(src), "-vf", "setpts='PTS+if(mod(N,3),0.013/TB,0)'",
               "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


def frame_seconds(path) -> list:
    """Every decoded frame's time from the first one, exact (Fractions of a second)."""
    pts, tb = video_pts(path), video_time_base(path)
    return [(p - pts[0]) * tb for p in pts]


SEGMENT_MODES = {"segments": ("--segment-seconds", "0.5"), "one-pass": ("--segment-seconds", "0")}


@pytest.mark.parametrize("mode", SEGMENT_MODES)
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_variable_rate_output_has_every_frame_at_its_time(dub, gen, tone_3s, tmp_path, suffix,
                                                          mode):
    """The last frame too: NUT stores no packet durations, and the one ffmpeg made up for
    the last frame (one tick of a rate it could not use) rounded to 0, so mp4 and mov
    dropped that frame. B-frames (--speed medium) put it before others in decode order."""
    clip = make_jittered_clip(gen)
    out = tmp_path / f"jitter{suffix}"
    r = dub(clip, "--audio", tone_3s, "-o", out, *FAST, "--speed", "medium",
            *SEGMENT_MODES[mode])
    assert r.code == 0, r
    want = frame_seconds(clip)
    assert len(want) == 50
    assert frame_seconds(out) == want
    a, b = probe(clip), probe(out)
    assert b.duration == a.duration  # the last frame lasts as long as in the input
    assert b.is_vfr


def test_variable_rate_model_render_has_every_frame_at_its_time(dub, gen, tone_3s, tmp_path):
    """The same through the analysis and the models (no face here: frames pass unchanged)."""
    clip = make_jittered_clip(gen)
    out = tmp_path / "jitter_models.mp4"
    r = dub(clip, "--audio", tone_3s, "-o", out, "--preset", "unittest", "-q",
            *SEGMENT_MODES["segments"])
    assert r.code == 0, r
    assert frame_seconds(out) == frame_seconds(clip)


@pytest.mark.parametrize("mode", SEGMENT_MODES)
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_one_frame_video_gives_one_decodable_frame(dub, gen, tone_3s, tmp_path, suffix, mode):
    """The joined segments of one frame reached ffmpeg with no frame rate to make its
    duration up from: a 0-length sample that no player shows, reported as success."""
    clip = make_clip(gen / "one_frame.mp4", seconds=0.04)
    assert probe(clip).frame_count == 1
    out = tmp_path / f"one{suffix}"
    r = dub(clip, "--audio", tone_3s, "-o", out, *FAST, *SEGMENT_MODES[mode])
    assert r.code == 0, r
    assert frame_seconds(out) == [0]
    info = probe(out)  # raised "truncated or damaged" for .mkv
    assert (info.frame_count, info.duration) == (1, Fraction(1, 25))


def test_ntsc_rate_timestamps_are_exact(dub, gen, tone_3s, tmp_path):
    clip = make_clip(gen / "ntsc.mp4", rate="24000/1001", seconds=1)
    out = tmp_path / "ntsc_out.mp4"
    assert dub(clip, "--audio", tone_3s, "-o", out, *FAST).code == 0
    a, b = assert_same_picture_timeline(clip, out)
    assert b.frame_rate == a.frame_rate and b.time_base == a.time_base
    assert video_pts(out) == video_pts(clip)


def test_mkv_whose_timestamps_start_late_is_dubbed(dub, clip_320, tone_3s, tmp_path):
    """An mkv starting at 10 s is whole (its header's 11 s is the end time, not the
    length): dubbed like an mp4 with the same offset, every frame kept."""
    late = tmp_path / "late.mkv"
    ffmpeg("-i", str(clip_320), "-c", "copy", "-output_ts_offset", "10", str(late))
    out = tmp_path / "late_out.mp4"
    r = dub(late, "--audio", tone_3s, "-o", out, *FAST)
    assert r.code == 0, r
    assert_same_picture_timeline(late, out)


def test_rotation_is_kept_as_metadata(dub, gen, clip_320, tone_3s, tmp_path):
    rotated = gen / "rot_in.mp4"
    if not rotated.exists():
        ffmpeg("-display_rotation", "270", "-i", str(clip_320), "-c", "copy", str(rotated))
    out = tmp_path / "rot_out.mp4"
    assert dub(rotated, "--audio", tone_3s, "-o", out, *FAST).code == 0
    info = probe(out)
    assert info.rotation == 270 and (info.width, info.height) == (320, 240)


@needs_media
def test_clip_without_audio_gets_the_dub(dub, tmp_path):
    clip = CLIPS / "glasses_selfie_noaudio.mp4"
    out = tmp_path / "o.mp4"
    assert dub(clip, "--audio", SPEECH / "hi_news_22s.wav", "-o", out, *FAST).code == 0
    assert len(audio_streams(out)) == 1


def test_original_audio_kept_as_second_labelled_track(dub, clip_320, tone_3s, tmp_path):
    out = tmp_path / "both.mp4"
    r = dub(clip_320, "--audio", tone_3s, "-o", out, "--keep-original-audio",
            "--dub-language", "hin", *FAST)
    assert r.code == 0, r
    dub_track, original = audio_streams(out)
    assert (dub_track["title"], dub_track["language"], dub_track["default"]) == ("Dub", "hin",
                                                                                  True)
    assert original["title"] == "Original" and not original["default"]
    assert original["codec"] == "aac"


def _decoded(path, title: str) -> tuple[float, np.ndarray, int]:
    """(time of the first sample, mono samples, rate) of the audio track called ``title``."""
    with av.open(str(path)) as c:
        s = next(s for s in c.streams.audio
                 if title in (s.metadata.get("title"), s.metadata.get("handler_name")))
        frames = list(c.decode(s))
        start = float(frames[0].pts * s.time_base)
        samples = np.concatenate([f.to_ndarray().reshape(f.samples, -1).mean(1)
                                  if f.format.is_packed else f.to_ndarray().mean(0)
                                  for f in frames])
        return start, samples, s.codec_context.sample_rate


def test_a_picture_that_starts_after_its_audio_keeps_the_original_in_step(
        dub, clip_320, tmp_path):
    """A file whose picture starts 0.2 s after its audio (an edit list, a cut made with the
    sound ahead): the output's picture starts as late, so the Original track plays against
    it as it did in the input, and the dub's sample 0 still plays with the first frame."""
    late = tmp_path / "late_picture.mp4"
    ffmpeg("-i", str(clip_320), "-itsoffset", "0.2", "-i", str(clip_320),
           "-map", "1:v", "-map", "0:a", "-c", "copy", str(late))
    assert float(probe(late).picture_delay) == pytest.approx(0.2, abs=1e-3)
    click = tmp_path / "click.wav"  # silence with a 4 ms burst at 0.5 s
    with av.open(str(click), "w") as c:
        s = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        x = np.zeros((1, 16000), np.int16)
        x[0, 8000:8064] = 20000
        frame = av.AudioFrame.from_ndarray(x, format="s16", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "late_out.mov"  # mov: the dub as PCM, its samples exactly placed
    r = dub(late, "--audio", click, "-o", out, "--keep-original-audio", *FAST)
    assert r.code == 0, r
    first = [float(p * video_time_base(f)) for f in (late, out) for p in video_pts(f)[:1]]
    original_in = _decoded(late, "SoundHandler")[0]
    original_out = _decoded(out, "Original")[0]
    assert first[1] - original_out == pytest.approx(first[0] - original_in, abs=2e-3)
    start, samples, rate = _decoded(out, "Dub")
    heard = start + np.argmax(np.abs(samples)) / rate
    assert heard - first[1] == pytest.approx(0.5, abs=0.005)


def test_subtitles_are_copied(dub, gen, clip_320, tone_3s, tmp_path):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,800\nHello\n")
    with_subs = tmp_path / "subs.mkv"
    ffmpeg("-i", str(clip_320), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy",
           str(with_subs))
    for suffix, codecs in ((".mkv", {"subrip", "srt"}), (".mp4", {"mov_text"})):
        out = tmp_path / f"subs_out{suffix}"
        assert dub(with_subs, "--audio", tone_3s, "-o", out, *FAST).code == 0
        with av.open(str(out)) as c:
            names = [s.codec_context.name for s in c.streams.subtitles]
            assert len(names) == 1 and names[0] in codecs


def test_short_dub_is_padded_long_dub_is_cut_with_a_warning(dub, clip_320, tone_3s,
                                                            tone_half, tmp_path):
    short = tmp_path / "short.mp4"
    r = dub(clip_320, "--audio", tone_half, "-o", short, "--preset", "unittest", "--passthrough")
    assert r.code == 0 and "padded" in r.out
    assert abs(audio_streams(short)[0]["duration"] - 1.0) < 0.05
    long = tmp_path / "long.mp4"
    r = dub(clip_320, "--audio", tone_3s, "-o", long, "--preset", "unittest", "--passthrough")
    assert r.code == 0 and "warning" in r.err and "longer" in r.err
    assert abs(audio_streams(long)[0]["duration"] - 1.0) < 0.05
    # The dub's own sound is kept where it plays: the audio is not silent.
    with av.open(str(long)) as c:
        samples = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert np.abs(samples).max() > 0.1


def test_strict_length_refuses_a_mismatch(dub, clip_320, tone_3s, tmp_path):
    out = tmp_path / "strict.mp4"
    r = dub(clip_320, "--audio", tone_3s, "-o", out, "--strict-length", *FAST)
    assert r.code == 2 and r.err.startswith("dub: error:") and "longer" in r.err
    assert not out.exists()
    exact = make_tone(tmp_path / "exact.wav", 1.0)
    assert dub(clip_320, "--audio", exact, "-o", out, "--strict-length", *FAST).code == 0


def test_default_output_beside_the_input_and_force(dub, clip_320, tone_3s, tmp_path):
    src = tmp_path / "episode.mp4"
    src.write_bytes(clip_320.read_bytes())
    r = dub(src, "--audio", tone_3s, *FAST)
    out = tmp_path / "episode.dubbed.mp4"
    assert r.code == 0 and out.exists()
    stamp = sha(out)
    r = dub(src, "--audio", tone_3s, *FAST)
    assert r.code == 2 and "--force" in r.err and sha(out) == stamp
    assert dub(src, "--audio", tone_3s, "--force", *FAST).code == 0


def test_output_equal_to_input_is_refused(dub, clip_320, tone_3s, tmp_path):
    src = tmp_path / "same.mp4"
    src.write_bytes(clip_320.read_bytes())
    before = sha(src)
    for target in (src, tmp_path / "." / "same.mp4"):
        r = dub(src, "--audio", tone_3s, "-o", target, "--force", *FAST)
        assert r.code == 2 and "is the input" in r.err
    assert sha(src) == before


def test_no_temporary_files_are_left_beside_the_output(dub, clip_320, tone_3s, tmp_path):
    assert dub(clip_320, "--audio", tone_3s, "-o", tmp_path / "a.mp4", *FAST).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_output_has_the_permissions_of_any_new_file(dub, clip_320, tone_3s, tmp_path):
    """Written to a temporary file and renamed, the video is still readable by the group and
    others as the umask allows (not the temporary file's owner-only 0600)."""
    old = os.umask(0o022)
    try:
        assert dub(clip_320, "--audio", tone_3s, "-o", tmp_path / "a.mp4", *FAST).code == 0
        assert stat.S_IMODE((tmp_path / "a.mp4").stat().st_mode) == 0o644
        os.umask(0o077)
        assert dub(clip_320, "--audio", tone_3s, "-o", tmp_path / "b.mp4", *FAST).code == 0
        assert stat.S_IMODE((tmp_path / "b.mp4").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_keep_original_audio_without_original_audio_warns(dub, gen, tone_3s, tmp_path):
    clip = make_clip(gen / "silent_320.mp4", seconds=0.5, audio=False)
    out = tmp_path / "o.mp4"
    r = dub(clip, "--audio", tone_3s, "-o", out, "--keep-original-audio", "--preset",
            "unittest", "--passthrough")  # not -q: it hides warnings
    assert r.code == 0, r
    warnings = [x for x in r.err.splitlines() if x.startswith("dub: warning:")]
    assert any("no audio" in w and "Original" in w for w in warnings), r.err
    assert [a["title"] for a in audio_streams(out)] == ["Dub"]
