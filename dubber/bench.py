"""``make bench``: speed and memory of the pass-through render on generated 4K video.

Prints, from one run on this machine:

- 4K speed: ``dub`` pass-through of a 10 s 3840x2160 25 fps clip (ffmpeg testsrc2) against
  a plain ``ffmpeg`` transcode with the same encoder settings and the same ffmpeg binary,
  and their ratio (target <= 1.3);
- 4K memory: peak resident memory of the whole ``dub`` process tree (Python + ffmpeg) for a
  10 s and a 40 s clip (target: flat within 15 %, <= 2.5 GB);
- model-render memory: the same for a full ``dub`` (default preset and weights: analysis,
  face mesh, models, paste) of a real talking clip, ``man_map_844_en.mp4`` from
  ``../shared/media`` played 1 and 4 times over (target: flat within 15 %), so memory that
  grows with a film's length shows.

Usage: ``python -m dubber.bench [--speed medium] [--work DIR] [--skip-memory]
[--skip-models | --only-models]``.
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

from dubber.media.ffmpeg import ffmpeg_exe


def make_clip(path: Path, seconds: int, size: str = "3840x2160", rate: int = 25) -> None:
    """A testsrc2 clip with a 48 kHz tone, H.264 (veryfast, crf 20) like a delivery file."""
    if path.exists():
        return
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(tmp)], check=True)
    tmp.rename(path)


SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def looped(src: Path, times: int, path: Path) -> None:
    """``src`` played ``times`` times over, re-encoded (x264 crf 12) with its audio."""
    if path.exists():
        return
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(times - 1),
                    "-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-crf", "12",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(tmp)], check=True)
    tmp.rename(path)


def model_memory(dub: list[str], work: Path) -> None:
    """Peak RSS of a full model render of a real clip, once and four times over."""
    src = SHARED_MEDIA / "clips" / "man_map_844_en.mp4"
    speech = SHARED_MEDIA / "speech" / "hi_news_22s.wav"
    if not (src.exists() and speech.exists()):
        print(f"model-render memory: skipped ({src} or {speech} is missing)")
        return
    rss = []
    for times in (1, 4):
        clip = work / f"man_map_x{times}.mp4"
        looped(src, times, clip)
        seconds, peak = timed([*dub, str(clip), "--audio", str(speech), "-o",
                               str(work / f"model_x{times}.mkv"), "--force", "-q",
                               "--codec", "ffv1"])
        rss.append(peak)
        print(f"model render ({src.name} x{times}, default preset): {seconds:6.1f} s, "
              f"peak RSS {peak / 1024 ** 3:5.2f} GB", flush=True)
    print(f"model render memory x4 / x1: {rss[1] / rss[0]:5.3f}   (target: within 15 %)")


def make_dub(path: Path, seconds: int) -> None:
    if not path.exists():
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency=220:sample_rate=48000:duration={seconds}", str(path)],
                       check=True)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", default="medium", help="x264 preset for both sides")
    parser.add_argument("--crf", default="18")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "dubber-bench"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-models", action="store_true",
                        help="skip the model-render memory figures")
    parser.add_argument("--only-models", action="store_true",
                        help="only the model-render memory figures")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dub = [sys.executable, "-m", "dubber.cli_main"]
    print(f"ffmpeg: {ffmpeg_exe()}")
    print(f"machine: {os.cpu_count()} cores; x264 preset {args.speed}, crf {args.crf}")
    if args.only_models:
        model_memory(dub, work)
        return
    clip10, dub10 = work / "testsrc2_4k_10s.mp4", work / "dub_10s.wav"
    print("generating the 10 s 4K clip ...", flush=True)
    make_clip(clip10, 10)
    make_dub(dub10, 10)

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
    print(f"4K speed  ffmpeg transcode: {t_ref:7.2f} s ({frames / t_ref:5.2f} fps)")
    print(f"4K speed  dub pass-through: {t_dub:7.2f} s ({frames / t_dub:5.2f} fps)")
    print(f"4K speed  ratio dub/ffmpeg: {t_dub / t_ref:7.3f}   (target <= 1.3)")
    if args.skip_memory:
        return
    if not args.skip_models:
        model_memory(dub, work)
    clip40, dub40 = work / "testsrc2_4k_40s.mp4", work / "dub_40s.wav"
    print("generating the 40 s 4K clip ...", flush=True)
    make_clip(clip40, 40)
    make_dub(dub40, 40)
    fast = ["--speed", "ultrafast"]
    _, rss10u = timed([*dub_cmd[:-2], *fast])
    _, rss40 = timed([*dub, str(clip40), "--audio", str(dub40), "-o", str(work / "dub40.mp4"),
                      "--force", "-q", "--passthrough", "--codec", "x264", "--crf", args.crf,
                      *fast])
    gb = 1024 ** 3
    print(f"4K memory peak RSS (dub + ffmpeg), 10 s ({args.speed}): {rss10 / gb:5.2f} GB;"
          f" ffmpeg alone: {rss_ref / gb:5.2f} GB")
    print(f"4K memory peak RSS (dub + ffmpeg), 10 s (ultrafast): {rss10u / gb:5.2f} GB")
    print(f"4K memory peak RSS (dub + ffmpeg), 40 s (ultrafast): {rss40 / gb:5.2f} GB")
    print(f"4K memory 40 s / 10 s: {rss40 / rss10u:5.3f}   (target: within 15 %, <= 2.5 GB)")


if __name__ == "__main__":
    main()
