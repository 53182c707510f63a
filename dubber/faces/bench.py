"""Analysis-pass speed on a 4K clip on this machine (target: >= 15 frames per second).

The clip is generated with ffmpeg: a 3840x2160 30 fps canvas with two scaled copies of
``shared/media/clips/kim_1080p30_en.mp4`` composited in (faces about 300 and 130 px wide),
with kim's original audio, so every step runs: decode, shot cuts, detection with tiles and
windows, tracking, face mesh on full-resolution crops, speaker selection. Without the
shared media it falls back to a faceless testsrc2 clip (and says so).

Usage: ``python -m dubber.faces.bench [--seconds 7] [--work DIR]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from dubber.media.ffmpeg import ffmpeg_exe

KIM = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "clips" / "kim_1080p30_en.mp4"


def make_clip(out: Path, seconds: float) -> str:
    """Write the 4K benchmark clip; returns a one-line description of it."""
    if KIM.is_file():
        filt = ("[0:v]split[a][b];[a]scale=1622:912[big];[b]scale=703:396[small];"
                "[1:v][big]overlay=200:300[t];[t][small]overlay=2600:1400:shortest=1,"
                "format=yuv420p")
        subprocess.run([
            ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(KIM),
            "-f", "lavfi", "-i",
            "gradients=s=3840x2160:r=30:speed=0.01:c0=0x304050:c1=0x807060,noise=alls=6",
            "-filter_complex", filt, "-map", "0:a", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-c:a", "aac", str(out),
        ], check=True)
        return "3840x2160 30 fps H.264, two real faces (~300 and ~130 px) with speech"
    subprocess.run([
        ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
        f"testsrc2=size=3840x2160:rate=30:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", str(out),
    ], check=True)
    return "3840x2160 30 fps H.264 testsrc2 (no faces: shared media not found)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.faces.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=7.0, help="clip length (default 7)")
    ap.add_argument("--work", help="folder for the generated clip (default: a temp folder)")
    opts = ap.parse_args(argv)

    from dubber.config import load_config
    from dubber.errors import InputError
    from dubber.faces.analyze import AUDIO_RATE, AnalysisStats, analyze_chunks, detection_scale
    from dubber.media.audio import load_audio
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    with tempfile.TemporaryDirectory(dir=opts.work) as tmp:
        clip = Path(tmp) / "faces_bench_4k.mp4"
        what = make_clip(clip, opts.seconds)
        info = probe(clip)
        cfg = load_config("fast")
        scale = detection_scale(cfg.faces.detect_scale, info.width, info.height)
        try:
            audio = load_audio(clip, sample_rate=AUDIO_RATE)
        except InputError:
            audio = None
        t0 = time.perf_counter()
        decoded = sum(len(c) for c in read_chunks(info, cfg.media.chunk_frames, scale, full=True))
        decode_fps = decoded / (time.perf_counter() - t0)
        stats = AnalysisStats()
        cpu0 = time.process_time()
        tracks = analyze_chunks(
            read_chunks(info, cfg.media.chunk_frames, scale, full=True), info.width,
            info.height, info.frame_rate, cfg.faces, audio, scale, stats=stats)
        cpu = time.process_time() - cpu0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"clip:                {what}, {stats.frames} frames")
    print(f"machine:             {os.cpu_count()} cores, load average {load:.2f} at the end")
    print(f"decode only:         {decode_fps:6.1f} fps (full-res YUV + quarter-size RGB copy)")
    print(f"analysis pass:       {stats.fps:6.1f} fps  ({stats.seconds:.1f} s wall, "
          f"{cpu:.1f} s CPU; target >= 15 fps)")
    print(f"detector calls:      {stats.detector_calls / stats.frames:6.2f} per frame")
    print(f"face-mesh calls:     {stats.mesh_calls / stats.frames:6.2f} per frame")
    print(f"found:               {len(tracks.shots)} shots, {len(tracks.tracks)} tracks, "
          f"speakers in {sum(s.selected_track is not None for s in tracks.shots)} shots")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
