"""Resumable renders (dubber/segments.py): a run killed with SIGKILL is resumed from its
first missing segment, to the very bytes an uninterrupted run writes, without rendering a
finished segment again; a run without ``--resume`` clears what a killed run left."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dubber.config import load_config
from dubber.errors import UsageError
from dubber.media.probe import probe
from dubber.pipeline import dub_video
from dubber.segments import parts_dir, plan_segments, read_state
from tests.helpers import CLIPS, SPEECH, decoded_planes, make_clip, needs_media, video_pts

PASS = ("--preset", "unittest", "--passthrough", "--segment-seconds", "0.4", "-q")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def clip_6s(gen) -> Path:
    return make_clip(gen / "seg_6s.mp4", size="640x360", seconds=6)


def kill_after(args: list[str], out: Path, segments: int, timeout: float = 120) -> list[dict]:
    """Start ``dub args`` and SIGKILL it once ``segments`` segments of ``out`` are done;
    returns the state rows it left."""
    proc = subprocess.Popen([sys.executable, "-m", "dubber.cli_main", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = parts_dir(out)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(list(folder.glob("[0-9]*.nut"))) >= segments:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    time.sleep(0.3)
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a process outlived the killed run"
    assert not out.exists()
    return read_state(out)


def test_segments_are_whole_chunks_of_about_the_asked_length(clip_6s):
    info = probe(clip_6s)
    cfg = load_config("unittest", {"runtime": {"segment_seconds": 0.4}})
    segs = plan_segments(info, cfg)
    assert [s.start for s in segs] == list(range(0, 150, 8))  # 0.4 s = 10 frames -> 8
    assert segs[-1].stop == info.frame_count == 150
    assert all(len(s) % cfg.media.chunk_frames == 0 for s in segs[:-1])



def test_variable_rate_segments_last_about_the_asked_seconds(gen):
    """At the average rate (25 fps), not the nominal one (the 1 ms time base's 1000 fps,
    which made one 50-frame segment of 0.5 s asked)."""
    from tests.test_cli_render import make_jittered_clip

    info = probe(make_jittered_clip(gen))
    assert info.is_vfr and info.frame_rate == 1000
    cfg = load_config("unittest", {"runtime": {"segment_seconds": 0.5}})
    segs = plan_segments(info, cfg)
    assert [s.start for s in segs] == [0, 16, 32, 48]  # 0.5 s = 12.5 frames -> 16
    assert segs[-1].stop == info.frame_count == 50

def test_sigkill_then_resume_writes_the_same_bytes(dub, clip_6s, tone_3s, tmp_path):
    ref = tmp_path / "ref.mp4"
    assert dub(clip_6s, "--audio", tone_3s, "-o", ref, *PASS).code == 0
    out = tmp_path / "out.mp4"
    # A plain run (no --resume) killed with SIGKILL half-way.
    rows = kill_after([clip_6s, "--audio", tone_3s, "-o", out, *PASS], out, 4)
    # Finished segment files (a kill can fall between a file's rename and its row).
    done_before = {int(p.stem) for p in parts_dir(out).glob("[0-9]*.nut")}
    assert 4 <= len(done_before) < len(rows), rows
    cfg = load_config("unittest", {"runtime": {"passthrough": True, "segment_seconds": 0.4}})
    result = dub_video(clip_6s, tone_3s, out, cfg, resume=True)
    assert sha(out) == sha(ref)
    assert video_pts(out) == video_pts(ref) == video_pts(clip_6s)
    # No segment was finished twice; the finished ones were not even started again.
    assert [r["renders"] for r in result.segments] == [1] * len(rows)
    assert all(r["starts"] == 1 for r in result.segments if r["idx"] in done_before)
    assert listing(tmp_path) == ["out.mp4", "ref.mp4"]  # the parts folder is gone


def test_rerun_without_resume_clears_what_killed_runs_left(dub, clip_6s, tone_3s, tmp_path):
    out = tmp_path / "out.mp4"
    # A segmented run killed leaves its parts folder; a one-pass one its hidden .part file.
    kill_after([clip_6s, "--audio", tone_3s, "-o", out, *PASS], out, 2)
    one_pass = [clip_6s, "--audio", tone_3s, "-o", out, "--preset", "unittest",
                "--passthrough", "--segment-seconds", "0", "--speed", "veryslow"]
    proc = subprocess.Popen([sys.executable, "-m", "dubber.cli_main", *map(str, one_pass)],
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if ".part." in p.name]:
        time.sleep(0.02)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    left = listing(tmp_path)
    assert any(".part." in n for n in left) and ".out.mp4.parts" in left, left
    assert dub(clip_6s, "--audio", tone_3s, "-o", out, *PASS).code == 0
    assert listing(tmp_path) == ["out.mp4"]


def test_resume_with_other_settings_is_refused(dub, clip_6s, tone_3s, tmp_path):
    out = tmp_path / "out.mp4"
    kill_after([clip_6s, "--audio", tone_3s, "-o", out, *PASS], out, 2)
    r = dub(clip_6s, "--audio", tone_3s, "-o", out, *PASS, "--crf", "30", "--resume")
    assert r.code == 2 and "other inputs or settings" in r.err and "without --resume" in r.err
    assert ".out.mp4.parts" in listing(tmp_path)  # the unfinished render is still there
    cfg = load_config("unittest", {"runtime": {"passthrough": True, "segment_seconds": 0.4},
                                   "encode": {"crf": 30}})
    with pytest.raises(UsageError):
        dub_video(clip_6s, tone_3s, out, cfg, resume=True)


@needs_media
@pytest.mark.slow  # ~70 s: three model renders of a 5 s clip
def test_a_resumed_model_render_has_the_uninterrupted_frames(dub, tmp_path):
    """The stages that carry state from chunk to chunk (face-mesh tracking, reference
    frames) start afresh at every segment, so a render resumed mid-film draws the frames an
    uninterrupted one does: checked on decoded lossless frames, not only on bytes."""
    clip, speech = CLIPS / "man_map_844_en.mp4", SPEECH / "hi_news_22s.wav"
    args = ("--preset", "unittest", "--codec", "ffv1", "--segment-seconds", "0.64", "-q")
    ref = tmp_path / "ref.mkv"
    assert dub(clip, "--audio", speech, "-o", ref, *args).code == 0
    out = tmp_path / "out.mkv"
    rows = kill_after([clip, "--audio", speech, "-o", out, *args], out, 3, timeout=300)
    assert 3 <= len(list(parts_dir(out).glob("[0-9]*.nut"))) < len(rows)
    assert dub(clip, "--audio", speech, "-o", out, *args, "--resume").code == 0
    a, b, src = decoded_planes(ref), decoded_planes(out), decoded_planes(clip)
    assert len(a) == len(b) == len(src) == 125
    for fa, fb in zip(a, b):
        for pa, pb in zip(fa, fb):
            assert np.array_equal(pa, pb)
    changed = sum(not np.array_equal(fa[0], fs[0]) for fa, fs in zip(a, src))
    assert changed > 60  # the models did draw the mouth (this is not a pass-through)
    assert sha(out) == sha(ref)
