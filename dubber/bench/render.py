"""Speed and memory of the render on generated 4K video (``python -m dubber.bench render``).

Prints, from one run on this machine:

- 4K speed: ``dub`` pass-through of a 10 s 3840x2160 25 fps clip (ffmpeg testsrc2) against
  a plain ``ffmpeg`` transcode with the same encoder settings and the same ffmpeg binary,
  and their ratio (target <= 1.3);
- 4K memory: peak resident memory of the whole ``dub`` process tree (Python + ffmpeg) for a
  10 s and a 40 s clip (target: flat within 15 %, <= 2.5 GB);
- model-render memory: the same for a full ``dub`` (default preset and weights: analysis,
  face mesh, models, paste) of a real talking clip, ``man_map_844_en.mp4`` from
  ``../shared/media`` played 1 and 4 times over (target: flat within 15 %), so memory that
  grows with a film's length shows;
- with ``--mouth``, the mouth bank pass without and with the hands before the face
  (:mod:`dubber.faces.hands`) on the 4K face and on ``two_faces_splitscreen_720p`` (a man
  waving his hand by his mouth): seconds each, and the hands' cost per dubbed face and frame.

Usage: ``python -m dubber.bench render [--speed medium] [--work DIR] [--skip-memory]
[--skip-models | --only-models] [--json]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from dubber.bench.media import SHARED_MEDIA, ffmpeg, looped, make_clip, make_tone
from dubber.bench.report import Report, add_json_flag
from dubber.media.ffmpeg import ffmpeg_exe


def model_memory(dub: list[str], work: Path, report: Report) -> None:
    """Peak RSS of a full model render of a real clip, once and four times over."""
    src = SHARED_MEDIA / "clips" / "man_map_844_en.mp4"
    speech = SHARED_MEDIA / "speech" / "hi_news_22s.wav"
    if not (src.exists() and speech.exists()):
        report.info("model-render memory", f"skipped ({src} or {speech} is missing)")
        return
    rss = []
    for times in (1, 4):
        clip = work / f"man_map_x{times}.mp4"
        if not clip.exists():
            looped(src, times, clip)
        seconds, peak = timed([*dub, str(clip), "--audio", str(speech), "-o",
                               str(work / f"model_x{times}.mkv"), "--force", "-q",
                               "--codec", "ffv1"])
        rss.append(peak)
        report.figure(f"model render time, {src.stem} x{times}", seconds, "s")
        report.figure(f"model render peak RSS, {src.stem} x{times}", peak / 1024 ** 3, "GB")
    report.figure("model render memory x4 / x1", rss[1] / rss[0], "", "within 15 %")


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total = 0
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def timed(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in bytes of its process tree)."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return elapsed, peak


def upscaled_4k(src: Path, path: Path, times: int = 1) -> Path:
    """``src`` scaled to 2160 lines and centred on a 3840x2160 frame (x264 crf 14), played
    ``times`` times over, with its audio: a real face at 4K."""
    ffmpeg("-stream_loop", str(times - 1), "-i", str(src), "-vf",
           "scale=-2:2160:flags=lanczos,pad=3840:2160:(ow-iw)/2:0,format=yuv420p",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "14", "-c:a", "aac", str(path))
    return path


def mouth_speed(dub: list[str], work: Path, report: Report, speed: str, crf: str) -> None:
    """The full default dub of a real face at 4K against ``--passthrough`` of the same clip
    (same encoder settings), and its peak RSS for the clip once and four times over."""
    src = SHARED_MEDIA / "clips" / "man_map_844_en.mp4"
    speech = SHARED_MEDIA / "speech" / "hi_news_22s.wav"
    if not (src.exists() and speech.exists()):
        report.info("4K mouth render", f"skipped ({src} or {speech} is missing)")
        return
    common = ["--audio", str(speech), "--force", "-q", "--codec", "x264", "--crf", crf,
              "--speed", speed]
    rss = []
    for times in (1, 4):
        clip = work / f"man_map_4k_x{times}.mp4"
        if not clip.exists():
            upscaled_4k(src, clip, times)
        if times == 1:
            t_pass, _ = timed([*dub, str(clip), "-o", str(work / "mouth_pass.mp4"), *common,
                               "--passthrough"])
            report.figure("4K real face, dub --passthrough", t_pass, "s")
        t_dub, peak = timed([*dub, str(clip), "-o", str(work / f"mouth_x{times}.mp4"), *common])
        rss.append(peak)
        report.figure(f"4K real face x{times}, full dub", t_dub, "s")
        report.figure(f"4K real face x{times}, full dub peak RSS", peak / 1024 ** 3, "GB")
        if times == 1:
            report.figure("4K real face, time ratio full dub / passthrough", t_dub / t_pass, "",
                          "<= 2")
            bank_hands_cost(clip, "4K real face", report)
    report.figure("4K real face, peak RSS x4 / x1", rss[1] / rss[0], "", "within 15 %")


def bank_hands_cost(clip: Path, label: str, report: Report) -> None:
    """The mouth bank pass of ``clip``'s speakers without and with the hands before the face
    (:mod:`dubber.faces.hands`), each into an empty cache, in this process; the analysis
    comes from the cache (or runs first, untimed)."""
    from dubber.config import load_config
    from dubber.faces.analyze import analyze
    from dubber.media.probe import probe
    from dubber.mouth.plan import dubbed_banks

    cfg = load_config("fast")
    info = probe(clip)
    tracks = analyze(clip, cfg, info=info)
    took = {}
    for hands in (False, True):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            banks = dubbed_banks(info, tracks, cfg, cache=cache, hands=hands)
            took[hands] = time.perf_counter() - start
    faces = sum(len(b.frames) for b in banks.values() if b is not None)
    found = sum(int(np.isfinite(b.hands[:, :, 0, 0]).any(1).sum()) for b in banks.values()
                if b is not None and b.hands is not None)
    report.figure(f"{label}, bank pass without hands", took[False], "s")
    report.figure(f"{label}, bank pass with hands", took[True], "s")
    report.figure(f"{label}, hands per dubbed face and frame",
                  1000 * (took[True] - took[False]) / max(faces, 1), "ms")
    report.info(f"{label}, dubbed faces with a hand in sight", f"{found} of {faces}")


def _clip_and_dub(work: Path, seconds: int) -> tuple[Path, Path]:
    clip, dub = work / f"testsrc2_4k_{seconds}s.mp4", work / f"dub_{seconds}s.wav"
    if not clip.exists():
        make_clip(clip, size="3840x2160", rate=25, seconds=seconds, speed="veryfast", crf=20)
    if not dub.exists():
        make_tone(dub, seconds)
    return clip, dub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dubber.bench render",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", default="medium", help="x264 preset for both sides")
    parser.add_argument("--crf", default="18")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dubber-bench"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-models", action="store_true",
                        help="skip the model-render memory figures")
    parser.add_argument("--only-models", action="store_true",
                        help="only the model-render memory figures")
    parser.add_argument("--mouth", action="store_true",
                        help="only the 4K real-face figures: full dub against --passthrough, "
                             "and its memory once and four times over")
    add_json_flag(parser)
    args = parser.parse_args(argv)
    report = Report("render", args.json)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dub = [sys.executable, "-m", "dubber.cli_main"]
    report.info("ffmpeg", ffmpeg_exe())
    report.info("machine", f"{os.cpu_count()} cores; x264 preset {args.speed}, crf {args.crf}")
    if args.mouth:
        mouth_speed(dub, work, report, args.speed, args.crf)
        waving = SHARED_MEDIA / "clips" / "two_faces_splitscreen_720p.mp4"
        if waving.exists():  # a man who waves his hand before his mouth
            bank_hands_cost(waving, "720p, hands waved", report)
        report.close()
        return 0
    if args.only_models:
        model_memory(dub, work, report)
        report.close()
        return 0
    clip10, dub10 = _clip_and_dub(work, 10)
    out_ref, out_dub = work / "ref.mp4", work / "dub.mp4"
    ref_cmd = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip10), "-i", str(dub10),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264", "-preset", args.speed,
               "-crf", args.crf, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k",
               str(out_ref)]
    dub_cmd = [*dub, str(clip10), "--audio", str(dub10), "-o", str(out_dub), "--force", "-q",
               "--passthrough", "--codec", "x264", "--crf", args.crf, "--speed", args.speed]
    t_ref, rss_ref = timed(ref_cmd)
    t_dub, rss10 = timed(dub_cmd)
    frames = 250
    report.figure("4K speed, ffmpeg transcode", frames / t_ref, "fps")
    report.figure("4K speed, dub pass-through", frames / t_dub, "fps")
    report.figure("4K speed, time ratio dub / ffmpeg", t_dub / t_ref, "", "<= 1.3")
    if args.skip_memory:
        report.close()
        return 0
    if not args.skip_models:
        model_memory(dub, work, report)
    clip40, dub40 = _clip_and_dub(work, 40)
    fast = ["--speed", "ultrafast"]
    _, rss10u = timed([*dub_cmd[:-2], *fast])
    _, rss40 = timed([*dub, str(clip40), "--audio", str(dub40), "-o", str(work / "dub40.mp4"),
                      "--force", "-q", "--passthrough", "--codec", "x264", "--crf", args.crf,
                      *fast])
    gb = 1024 ** 3
    report.figure(f"4K peak RSS, ffmpeg transcode 10 s ({args.speed})", rss_ref / gb, "GB")
    report.figure(f"4K peak RSS, dub + ffmpeg 10 s ({args.speed})", rss10 / gb, "GB", "<= 2.5")
    report.figure("4K peak RSS, dub + ffmpeg 10 s (ultrafast)", rss10u / gb, "GB")
    report.figure("4K peak RSS, dub + ffmpeg 40 s (ultrafast)", rss40 / gb, "GB")
    report.figure("4K memory 40 s / 10 s", rss40 / rss10u, "", "within 15 %")
    report.close()
    return 0
