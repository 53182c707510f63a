"""`dub mouth-shapes AUDIO`: the track frame by frame; bad input is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers import SPEECH, ffmpeg, make_clip, needs_speech


def one_line_error(r, *words):
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dub: error: "), r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in lines[0], (w, lines[0])


@needs_speech
def test_tsv_has_one_line_per_frame_at_the_asked_rate(dub):
    r = dub("mouth-shapes", SPEECH / "zh_read_4s.wav", "--fps", "30", "-q")
    assert r.code == 0, r
    lines = r.out.strip().splitlines()
    assert lines[0].split("\t") == ["frame", "time", "viseme", "opening", "width", "rounding",
                                    "speech", "confidence"]
    rows = [line.split("\t") for line in lines[1:]]
    from dubber.media.audio import load_audio

    duration = len(load_audio(SPEECH / "zh_read_4s.wav")) / 16000
    assert len(rows) == int(np.ceil(duration * 30))
    assert [int(x[0]) for x in rows] == list(range(len(rows)))
    assert abs(float(rows[30][1]) - 1.0) < 1e-6
    assert {x[2] for x in rows} <= set("ABCDEFGHX") and len({x[2] for x in rows}) >= 3
    assert sum(int(x[6]) for x in rows) > len(rows) / 2  # mostly speech
    assert all(0 <= float(x[7]) <= 1 for x in rows)


@needs_speech
def test_json_to_a_file_with_the_videos_own_frame_times(dub, tmp_path):
    video = make_clip(tmp_path / "v.mp4", rate="24000/1001", seconds=2.0, audio=False)
    out = tmp_path / "track.json"
    r = dub("mouth-shapes", SPEECH / "en_radio_8s.wav", "--video", video, "--format", "json",
            "-o", out, "-q")
    assert r.code == 0 and r.out == "", r
    data = json.loads(out.read_text())
    assert data["schema"] == "dubber.mouth-track/1" and "A" in data["visemes"]
    frames = data["frames"]
    assert len(frames) == 48  # the video's frames, not the audio's length
    assert np.allclose([f["time"] for f in frames], np.arange(48) * 1001 / 24000, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["track.json", "v.mp4"]


def test_digital_silence_is_a_mouth_at_rest(dub, tmp_path):
    wav = tmp_path / "quiet.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.5", str(wav))
    r = dub("mouth-shapes", wav, "-q")
    assert r.code == 0, r
    rows = [line.split("\t") for line in r.out.strip().splitlines()[1:]]
    assert len(rows) == 38 and {x[2] for x in rows} == {"X"} and {x[6] for x in rows} == {"0"}


def test_audio_shorter_than_two_steps_is_a_frame_at_rest(dub, tmp_path):
    # under 20 ms the loudness's 3-step mean came out longer than the audio: an internal
    # error, exit 1
    for ms in (1, 15):
        blip = tmp_path / f"blip{ms}.wav"
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000",
               "-t", str(ms / 1000), str(blip))
        r = dub("mouth-shapes", blip, "-q")
        assert r.code == 0, r
        rows = [line.split("\t") for line in r.out.strip().splitlines()[1:]]
        assert len(rows) == 1 and rows[0][2] == "X" and rows[0][6] == "0", rows


@needs_speech
def test_loud_stereo_reads_as_its_mono(dub, tmp_path):
    # the same channel twice, near full scale: the downmix to mono adds up past full scale,
    # which the recogniser's 16-bit input clipped, and the visemes changed
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    ffmpeg("-i", str(SPEECH / "zh_read_4s.wav"), "-af",
           "volume=30dB,alimiter=limit=0.97", "-ac", "1", str(mono))
    ffmpeg("-i", str(mono), "-af", "pan=stereo|c0=c0|c1=c0", str(stereo))
    tracks = []
    for wav in (mono, stereo):
        r = dub("mouth-shapes", wav, "-q")
        assert r.code == 0, r
        tracks.append([line.split("\t") for line in r.out.strip().splitlines()[1:]])
    assert [x[2] for x in tracks[0]] == [x[2] for x in tracks[1]]
    opening = np.array([[float(x[3]) for x in t] for t in tracks])
    assert np.abs(opening[0] - opening[1]).max() < 0.01


def test_bad_inputs_are_one_line_and_exit_2(dub, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 20)
    one_line_error(dub("mouth-shapes", text), "not an audio file")
    one_line_error(dub("mouth-shapes", tmp_path / "missing.wav"), "does not exist")
    empty = tmp_path / "empty.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(empty))
    one_line_error(dub("mouth-shapes", empty), "no samples")
    video = make_clip(tmp_path / "silent.mp4", audio=False)
    one_line_error(dub("mouth-shapes", video), "no audio stream")
    tone = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=0.5", str(tone))
    one_line_error(dub("mouth-shapes", tone, "--fps", "25", "--video", video), "not both")
    one_line_error(dub("mouth-shapes", tone, "--video", text), "not a video")
    one_line_error(dub("mouth-shapes", tone, "-o", tmp_path / "no" / "such" / "dir.tsv"),
                   "cannot write")
    # -o never replaces an input (it did: the TSV took the place of the audio or the video),
    # is not a folder (an internal error), and replaces another file only with --force
    before = tone.read_bytes(), video.read_bytes()
    one_line_error(dub("mouth-shapes", tone, "-o", tone, "--force"), "is the input")
    link = tmp_path / "link.wav"
    link.symlink_to(tone)
    one_line_error(dub("mouth-shapes", tone, "-o", link, "--force"), "is the input")
    link.unlink()
    one_line_error(dub("mouth-shapes", tone, "--video", video, "-o", video, "--force"),
                   "is the input")
    assert (tone.read_bytes(), video.read_bytes()) == before
    one_line_error(dub("mouth-shapes", tone, "-o", tmp_path), "is a folder")
    taken = tmp_path / "taken.tsv"
    taken.write_text("keep me\n")
    one_line_error(dub("mouth-shapes", tone, "-o", taken), "already exists", "--force")
    assert taken.read_text() == "keep me\n"
    r = dub("mouth-shapes", tone, "-o", taken, "--force", "-q")
    assert r.code == 0 and taken.read_text().startswith("frame\ttime"), r
    taken.unlink()
    r = dub("mouth-shapes", tone, "--fps", "0")
    assert r.code == 2 and "Traceback" not in r.err
    one_line_error(dub("mouth-shapes", tone, "--fps", "nan"), "not a finite number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.wav", "notes.wav",
                                                          "silent.mp4", "tone.wav"]
