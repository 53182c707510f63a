"""Every clip and dub track the benchmarks and the tests make, with the project's ffmpeg.

Generated inputs are the way to get 4K, odd formats and known content; real footage is
read in place from ``../shared/media`` (:data:`SHARED_MEDIA`, never copied). The tests
import these makers too, so a benchmark and a test of the same thing use the same input.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dubber.media.ffmpeg import ffmpeg_exe

SHARED_MEDIA = Path(__file__).resolve().parents[2].parent / "shared" / "media"


def shared_file(name: str, folders: tuple[str, ...]) -> Path | None:
    """The file of ``../shared/media`` named ``name`` (any extension) in the first of
    ``folders`` that has one; None when none does."""
    for folder in folders:
        for p in sorted((SHARED_MEDIA / folder).glob(f"{name}.*")):
            return p
    return None


KIM = SHARED_MEDIA / "clips" / "kim_1080p30_en.mp4"

# The 4K composite: kim's 1920x1080 frames scaled by these factors and overlaid at these
# corners of a 3840x2160 canvas (her face, ~355 px wide at 1080p, becomes ~300 and ~130 px).
COMPOSITE_4K = ((1622 / 1920, (200, 300)), (703 / 1920, (2600, 1400)))


def ffmpeg(*args: str) -> None:
    """Run the project's ffmpeg (``-y``, errors only); raises RuntimeError with its message."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.strip()}")


def make_clip(path: Path, *, size: str = "320x240", rate: str | int = 25, seconds: float = 1.0,
              pix_fmt: str = "yuv420p", codec: str = "libx264", audio: bool = True,
              source: str = "testsrc2", speed: str = "ultrafast", crf: int | None = None,
              extra_in: tuple[str, ...] = (), extra_out: tuple[str, ...] = ()) -> Path:
    """A lavfi test clip (``source``: testsrc2, smptebars, ...) with a 440 Hz 48 kHz tone
    when ``audio``; x264/x265 at ``speed`` (and ``crf``)."""
    sep = ":" if "=" in source else "="
    args = [*extra_in, "-f", "lavfi", "-i",
            f"{source}{sep}size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    args += ["-c:v", codec, "-pix_fmt", pix_fmt]
    if codec in ("libx264", "libx265"):
        args += ["-preset", speed] + (["-crf", str(crf)] if crf is not None else [])
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, *extra_out, str(path))
    return path


def make_tone(path: Path, seconds: float, rate: int = 48000, freq: int = 220,
              channels: int = 1) -> Path:
    """A sine tone (a dub track with no speech in it)."""
    layout = "mono" if channels == 1 else "stereo"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}",
           "-af", f"aformat=channel_layouts={layout}", str(path))
    return path


def looped(src: Path, times: int, path: Path) -> Path:
    """``src`` played ``times`` times over, re-encoded (x264 crf 12) with its audio."""
    ffmpeg("-stream_loop", str(times - 1), "-i", str(src), "-c:v", "libx264", "-preset",
           "veryfast", "-crf", "12", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    return path


def make_4k_composite(out: Path, seconds: float = 2.0, *, audio: bool = False,
                      speed: str = "ultrafast", crf: int = 18) -> Path:
    """A 3840x2160 30 fps clip with two scaled copies of kim_1080p30_en composited in
    (:data:`COMPOSITE_4K`) over a moving gradient with grain; with ``audio``, kim's speech
    (the clip loops when ``seconds`` is longer than hers)."""
    (s1, (x1, y1)), (s2, (x2, y2)) = COMPOSITE_4K
    loop = ["-stream_loop", "-1"] if audio else []
    ffmpeg(*loop, "-i", str(KIM), "-f", "lavfi", "-i",
           "gradients=s=3840x2160:r=30:speed=0.01:c0=0x304050:c1=0x807060,noise=alls=6",
           "-filter_complex",
           f"[0:v]split[a][b];[a]scale={round(1920 * s1)}:{round(1080 * s1)}[big];"
           f"[b]scale={round(1920 * s2)}:{round(1080 * s2)}[small];"
           f"[1:v][big]overlay={x1}:{y1}[t];[t][small]overlay={x2}:{y2}:shortest=1,"
           "format=yuv420p",
           *(["-map", "0:a", "-c:a", "aac"] if audio else ["-an"]),
           "-t", str(seconds), "-c:v", "libx264", "-preset", speed, "-crf", str(crf), str(out))
    return out


def make_closeup_cut(out: Path, cut_frame: int = 120) -> Path:
    """kim_1080p30_en at 960x540 with a hard cut to a 2x close-up of her face at
    ``cut_frame`` (original audio kept): the shot change the analysis must find."""
    ffmpeg("-i", str(KIM), "-filter_complex",
           "[0:v]split[a][b];[a]scale=960:540[w];"
           "[b]crop=960:540:480:60,scale=960:540[z];"
           f"[w][z]overlay=0:0:enable='gte(n\\,{cut_frame})',format=yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac", str(out))
    return out


def make_three_shots(out: Path) -> Path:
    """Three shots at 640x640, 25 fps, with their own sound: man_map_844_en's first 60
    frames, a cut to woman_glasses_524_en (50 frames), a cut back to man_map's last 65
    frames. One actor in two shots, another actor between them."""
    clips = SHARED_MEDIA / "clips"
    parts = ((clips / "man_map_844_en.mp4", 0, 60), (clips / "woman_glasses_524_en.mp4", 0, 50),
             (clips / "man_map_844_en.mp4", 60, 125))
    args, chains = [], []
    for k, (src, a, b) in enumerate(parts):
        args += ["-i", str(src)]
        chains.append(f"[{k}:v]trim=start_frame={a}:end_frame={b},setpts=PTS-STARTPTS,"
                      f"scale=640:640,setsar=1,fps=25[v{k}];"
                      f"[{k}:a]atrim={a / 25}:{b / 25},asetpts=PTS-STARTPTS,"
                      f"aresample=48000,aformat=channel_layouts=mono[a{k}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{k}][a{k}]" for k in range(3)) + \
        "concat=n=3:v=1:a=1[v][a]"
    ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "14", "-pix_fmt", "yuv420p", "-c:a", "aac", str(out))
    return out


def make_steady(out: Path, frame: int = 100, seconds: float = 3.0) -> Path:
    """One frame of kim_1080p30_en held still for ``seconds``, with fresh grain on every
    frame so that the detector sees a slightly different picture each time."""
    ffmpeg("-i", str(KIM), "-vf",
           f"select=eq(n\\,{frame}),scale=960:540,loop=loop=-1:size=1,"
           "noise=alls=8:allf=t,format=yuv420p",
           "-r", "30", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "23", "-an", str(out))
    return out


def make_rotated(out: Path, rotation: int = 90, seconds: float = 2.0) -> Path:
    """kim_1080p30_en at 960x540 stored sideways (frames turned clockwise by ``rotation``)
    with a display rotation that turns them upright again, like a phone recording."""
    turn = {90: "transpose=clock", 270: "transpose=cclock", 180: "hflip,vflip"}[rotation]
    tmp = out.with_suffix(".tmp.mp4")
    ffmpeg("-i", str(KIM), "-vf", f"scale=960:540,{turn},format=yuv420p", "-t", str(seconds),
           "-c:v", "libx264", "-preset", "ultrafast", "-an", str(tmp))
    ffmpeg("-display_rotation", str(rotation), "-i", str(tmp), "-c", "copy", str(out))
    tmp.unlink()
    return out
