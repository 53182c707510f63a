"""Bad input: one line ``dub: error: ...``, exit code 2, nothing written, input untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import ffmpeg, make_clip

FAST = ("--preset", "unittest", "--passthrough", "-q")


def one_line_error(r, code=2, *words):
    assert r.code == code, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dub: error: "), r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in lines[0], (w, lines[0])


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_missing_input(dub, tone_3s, tmp_path):
    r = dub(tmp_path / "nope.mp4", "--audio", tone_3s, "-o", tmp_path / "o.mp4")
    one_line_error(r, 2, "does not exist")
    assert listing(tmp_path) == []


def test_not_a_video_and_no_video_stream(dub, tone_3s, tmp_path):
    text = tmp_path / "readme.mp4"
    text.write_text("hello\n" * 50)
    one_line_error(dub(text, "--audio", tone_3s, "-o", tmp_path / "o.mp4"), 2, "not a video")
    one_line_error(dub(tone_3s, "--audio", tone_3s, "-o", tmp_path / "o.mp4"), 2,
                   "no video stream")
    assert listing(tmp_path) == ["readme.mp4"]


def test_truncated_and_corrupt_inputs(dub, clip_320, tone_3s, tmp_path):
    data = clip_320.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    r = dub(cut, "--audio", tone_3s, "-o", tmp_path / "o.mp4")
    one_line_error(r, 2)
    assert any(w in r.err for w in ("truncated", "corrupt", "not a video"))
    # Damage the middle of an mkv's video data: decodable header, broken frames.
    mkv = tmp_path / "broken.mkv"
    ffmpeg("-i", str(clip_320), "-c", "copy", str(tmp_path / "ok.mkv"))
    raw = bytearray((tmp_path / "ok.mkv").read_bytes())
    raw[len(raw) // 2:] = b"\xff" * (len(raw) - len(raw) // 2)
    mkv.write_bytes(bytes(raw))
    r = dub(mkv, "--audio", tone_3s, "-o", tmp_path / "o2.mp4")
    one_line_error(r, 2)
    assert any(w in r.err for w in ("truncated", "corrupt"))
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o2.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_audio_with_no_samples(dub, clip_320, tmp_path):
    empty = tmp_path / "empty.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-frames:a", "0", str(empty))
    one_line_error(dub(clip_320, "--audio", empty, "-o", tmp_path / "o.mp4"), 2, "no samples")
    assert not (tmp_path / "o.mp4").exists()


def test_dub_file_that_is_not_audio(dub, clip_320, tmp_path):
    bogus = tmp_path / "dub.wav"
    bogus.write_bytes(b"RIFF0000WAVEnonsense" * 10)
    one_line_error(dub(clip_320, "--audio", bogus, "-o", tmp_path / "o.mp4"), 2)
    one_line_error(dub(clip_320, "--audio", tmp_path / "none.wav", "-o", tmp_path / "o.mp4"),
                   2, "does not exist")


def test_unwritable_or_missing_output_folder(dub, clip_320, tone_3s, tmp_path):
    one_line_error(dub(clip_320, "--audio", tone_3s, "-o", tmp_path / "no" / "o.mp4"), 2,
                   "does not exist")
    if os.geteuid() == 0:
        target = "/proc/dubber-test.mp4"  # root may write anywhere but here
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "o.mp4"
    one_line_error(dub(clip_320, "--audio", tone_3s, "-o", target), 2, "not writable")


def test_unknown_preset_codec_extension_and_missing_audio(dub, clip_320, tone_3s, tmp_path):
    one_line_error(dub(clip_320, "--audio", tone_3s, "--preset", "nope"), 2, "unknown preset",
                   "fast")
    one_line_error(dub(clip_320, "--audio", tone_3s, "-o", tmp_path / "o.avi"), 2, ".mp4")
    one_line_error(dub(clip_320), 2, "--audio")
    one_line_error(dub(clip_320, "--audio", tone_3s, "--codec", "vp9"), 2)
    one_line_error(dub(clip_320, "--audio", tone_3s, "--segment-seconds", "nan",
                       "-o", tmp_path / "o.mkv"), 2, "--segment-seconds", "not a finite number")
    assert listing(tmp_path) == []


def test_codec_that_cannot_keep_the_bit_depth(dub, gen, tone_3s, tmp_path):
    clip = make_clip(gen / "twelve.mkv", pix_fmt="yuv420p12le", codec="libx265", seconds=0.2,
                     audio=False)
    one_line_error(dub(clip, "--audio", tone_3s, "-o", tmp_path / "o.mp4", *FAST), 2, "x265")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_leaves_no_output(gen, tone_3s, tmp_path, sig):
    clip = make_clip(gen / "long_for_interrupt.mp4", size="1280x720", seconds=20, audio=False)
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "dubber.cli_main", str(clip), "--audio",
                             str(tone_3s), "-o", str(out), "--speed", "veryslow",
                             "--passthrough"],
                            stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as in a terminal, even when the test run itself was
                            # started in the background (which ignores SIGINT for children).
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not any(".part" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.1)
    time.sleep(1.0)  # well into the render (veryslow: it cannot finish first)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert listing(tmp_path) == []  # no output, no temp file
    leftovers = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""  # ffmpeg was stopped too


def test_output_equal_to_the_dub_track_is_refused(dub, clip_320, tmp_path):
    track = tmp_path / "dub.mp4"  # a dub track may be any file with audio, an mp4 too
    track.write_bytes(clip_320.read_bytes())
    (tmp_path / "link.mp4").symlink_to(track)
    os.link(track, tmp_path / "hard.mp4")
    before = track.read_bytes()
    for target in (track, tmp_path / "." / "dub.mp4", tmp_path / "link.mp4",
                   tmp_path / "hard.mp4"):
        r = dub(clip_320, "--audio", track, "-o", target, "--force", *FAST)
        one_line_error(r, 2, "is the dub track")
    assert track.read_bytes() == before
    assert listing(tmp_path) == ["dub.mp4", "hard.mp4", "link.mp4"]


def test_a_language_tag_the_output_cannot_carry_is_refused(dub, clip_320, tone_3s, tmp_path):
    # ffmpeg drops these without a word: mp4 keeps three lowercase letters, .mov only
    # QuickTime's own table.
    for lang, out, words in (("xx", "o.mp4", ("not an ISO 639-2",)),
                             ("hi", "o.mp4", ("ISO 639-1", "hin")),
                             ("HIN", "o.mkv", ("lowercase", "hin")),
                             ("deu", "o.mov", (".mov", ".mp4 or .mkv"))):
        r = dub(clip_320, "--audio", tone_3s, "-o", tmp_path / out, "--dub-language", lang,
                *FAST)
        one_line_error(r, 2, "--dub-language", *words)
    assert listing(tmp_path) == []


def test_abort_of_an_idle_writer_returns_and_leaves_nothing(clip_320, tone_3s, tmp_path):
    """An interruption while the encoder waits for the next chunk (the stages are working):
    abort stops the encoder thread at once and removes the temporary file."""
    from dubber.config import load_config
    from dubber.media.encode import MuxPlan, VideoWriter
    from dubber.media.probe import probe

    out = tmp_path / "o.mp4"
    plan = MuxPlan.make(probe(clip_320), tone_3s, 0, out, load_config("unittest").encode)
    writer = VideoWriter(plan)
    writer.start()
    time.sleep(0.3)  # ffmpeg started, the encoder thread idle, waiting for a chunk
    aborting = threading.Thread(target=writer.abort, daemon=True)
    t0 = time.monotonic()
    aborting.start()
    aborting.join(timeout=10)
    assert not aborting.is_alive(), "abort() hung on the idle encoder thread"
    assert time.monotonic() - t0 < 2
    assert not writer._thread.is_alive()
    assert listing(tmp_path) == []  # no output, no temporary file


_INTERRUPT_IN_STAGES = """
import os, signal, sys, time
import dubber.pipeline
from dubber.cli import main

run_stages, seen = dubber.pipeline.run_stages, []

def stages_then_signal(chunk, *args, **kwargs):
    seen.append(chunk)
    if len(seen) == 2:  # the encoder has taken chunk 1 and waits for the next one
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    return run_stages(chunk, *args, **kwargs)

dubber.pipeline.run_stages = stages_then_signal
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("segments", ["10", "0"], ids=["resumable", "one-encode"])
def test_interrupt_while_the_encoder_waits_exits_promptly(clip_320, tone_3s, tmp_path,
                                                          segments):
    """SIGTERM while a chunk is in the stages and the encoder is idle (the usual case in a
    model render, whose stages are slower than the encoder): exit 130, nothing left."""
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPT_IN_STAGES, str(clip_320),
                             "--audio", str(tone_3s), "-o", str(out), "--chunk-frames", "4",
                             "--segment-seconds", segments, *FAST],
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("dub hung after SIGTERM during the render")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert listing(tmp_path) == []  # no output, no temp file, no parts folder


_INTERRUPT_IN_CHECK = """
import sys
import dubber.sync.check
from dubber.cli import main

def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

dubber.sync.check.check_line = interrupted
sys.exit(main(sys.argv[1:]))
"""


def test_interrupt_during_the_sync_check_says_the_output_was_written(clip_320, tone_3s,
                                                                      tmp_path):
    # it said "no output was written" beside the finished output
    out = tmp_path / "o.mp4"
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_IN_CHECK, str(clip_320),
                           "--audio", str(tone_3s), "-o", str(out), "--report",
                           str(tmp_path / "sync.json"), *FAST],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "was written" in lines[0] and "no output" not in lines[0]
    assert listing(tmp_path) == ["o.mp4"]


_INTERRUPT_IN_IMPORT = """
import sys
import dubber.pipeline
from dubber.cli import main

def importing(*args, **kwargs):  # what a SIGTERM inside a library's import looks like
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        raise ImportError("a module could not finish loading") from exc

dubber.pipeline.dub_video = importing
sys.exit(main(sys.argv[1:]))
"""


def test_interrupt_wrapped_by_a_library_is_an_interrupt(clip_320, tone_3s, tmp_path):
    # it was "internal error (ImportError: ...)", exit 1
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_IN_IMPORT, str(clip_320),
                           "--audio", str(tone_3s), "-o", str(tmp_path / "o.mp4"), *FAST],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "dub: error: interrupted; no output was written"
    assert listing(tmp_path) == []


_SIGNAL_AT_SHUTDOWN = """
import atexit, os, signal, sys, time
from dubber.cli import main
SIG = getattr(signal, sys.argv[1])
def late():  # a signal while Python shuts down, after the command's work
    os.kill(os.getpid(), SIG)
    time.sleep(2)
atexit.register(late)
sys.argv = ["dub", "--version"]
main()
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_work_is_quiet(sig):
    # it printed "Exception ignored in atexit callback" and a traceback
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_AT_SHUTDOWN, sig],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("dub, version")
