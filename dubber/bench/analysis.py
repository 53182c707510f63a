"""Analysis-pass speed on a 4K clip on this machine (target: >= 15 frames per second).

The clip is generated with ffmpeg: a 3840x2160 30 fps canvas with two scaled copies of
``shared/media/clips/kim_1080p30_en.mp4`` composited in (faces about 300 and 130 px wide),
with kim's original audio, so every step runs: decode, shot cuts, detection with tiles and
windows, tracking, face mesh on full-resolution crops, speaker selection. Without the
shared media it falls back to a faceless testsrc2 clip (and says so).

Usage: ``python -m dubber.bench analysis [--seconds 7] [--work DIR] [--json]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dubber.bench.media import KIM, make_4k_composite
from dubber.bench.media import make_clip as make_clip_4k
from dubber.bench.report import Report, add_json_flag

def make_clip(out: Path, seconds: float) -> str:
    """Write the 4K benchmark clip; returns a one-line description of it."""
    if KIM.is_file():
        make_4k_composite(out, seconds, audio=True, speed="veryfast", crf=20)
        return "3840x2160 30 fps H.264, two real faces (~300 and ~130 px) with speech"
    make_clip_4k(out, size="3840x2160", rate=30, seconds=seconds, audio=False, speed="veryfast",
                 crf=20)
    return "3840x2160 30 fps H.264 testsrc2 (no faces: shared media not found)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.bench analysis", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=7.0, help="clip length (default 7)")
    ap.add_argument("--work", help="folder for the generated clip (default: a temp folder)")
    add_json_flag(ap)
    opts = ap.parse_args(argv)
    report = Report("analysis", opts.json)

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
    report.info("clip", f"{what}, {stats.frames} frames")
    report.info("machine", f"{os.cpu_count()} cores, load average {load:.2f} at the end")
    report.figure("decode only (full-res YUV + quarter-size RGB copy)", decode_fps, "fps")
    report.figure("analysis pass", stats.fps, "fps", ">= 15")
    report.figure("analysis wall time", stats.seconds, "s")
    report.figure("analysis CPU time", cpu, "s")
    report.figure("detector calls", stats.detector_calls / stats.frames, "per frame")
    report.figure("face-mesh calls", stats.mesh_calls / stats.frames, "per frame")
    report.info("found", f"{len(tracks.shots)} shots, {len(tracks.tracks)} tracks, speakers in "
                f"{sum(s.selected_track is not None for s in tracks.shots)} shots")
    report.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
