"""``dub verify-watermark VIDEO``: exit 0 on a dubbed video (also re-encoded, shrunk and
cropped), 1 on an unmarked one, 2 with one line and nothing written on bad input."""

from __future__ import annotations

import json

import pytest

from tests.helpers import CLIPS, SPEECH, ffmpeg, make_clip, needs_media
from tests.test_cli_errors import listing, one_line_error


def test_bad_inputs_are_one_line_and_write_nothing(dub, tone_3s, clip_320, tmp_path):
    one_line_error(dub("verify-watermark", tmp_path / "nope.mp4"), 2, "does not exist")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 40)
    one_line_error(dub("verify-watermark", text), 2, "not a video")
    one_line_error(dub("verify-watermark", tone_3s), 2, "no video stream")
    one_line_error(dub("verify-watermark", tmp_path), 2)
    for bad in ("xyz", "d0bbe12", "d0bbe1255", "g0bbe125"):
        one_line_error(dub("verify-watermark", clip_320, "--payload", bad), 2, "payload")
    one_line_error(dub("verify-watermark", clip_320, "--every", "0"), 2)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip_320.read_bytes()[:2000])
    one_line_error(dub("verify-watermark", cut), 2)
    assert listing(tmp_path) == ["cut.mp4", "notes.mp4"]


def test_a_video_without_faces_is_no_match(dub, tmp_path):
    clip = make_clip(tmp_path / "bars.mp4", size="640x360", seconds=0.6, audio=False)
    r = dub("verify-watermark", clip, "--json")
    assert r.code == 1, r
    res = json.loads(r.out)
    assert res["match"] is False and res["face_frames"] == 0 and res["frames"] == 15
    r = dub("verify-watermark", clip)
    assert r.code == 1 and "NO MATCH" in r.out.splitlines()[-1]


@needs_media
@pytest.mark.slow
def test_dubbed_clip_matches_after_reencode_shrink_and_crop_the_original_does_not(dub,
                                                                                  tmp_path):
    clip = CLIPS / "man_map_844_en.mp4"
    out = tmp_path / "dubbed.mp4"
    r = dub(clip, "--audio", SPEECH / "hi_news_22s.wav", "-o", out, "--preset", "unittest",
            "-q")
    assert r.code == 0, r
    attacked = tmp_path / "attacked.mp4"
    ffmpeg("-i", str(out), "-vf", "crop=trunc(iw*0.4)*2:trunc(ih*0.4)*2,scale=trunc(iw/4)*2:-2",
           "-c:v", "libx264",
           "-crf", "23", "-preset", "fast", "-an", str(attacked))
    for video in (out, attacked):
        r = dub("verify-watermark", video, "--json", "--every", "3")
        assert r.code == 0, r
        res = json.loads(r.out)
        assert res["match"] and res["share"] >= 0.8, {k: res[k] for k in list(res)[:9]}
        assert res["mean_bit_accuracy"] > 0.9
    r = dub("verify-watermark", clip, "--json", "--every", "3")
    assert r.code == 1, r
    res = json.loads(r.out)
    assert res["face_frames"] > 30 and res["matched_frames"] == 0
    # Another payload is not found in the dubbed video.
    assert dub("verify-watermark", out, "--payload", "12345678", "--every", "3").code == 1
