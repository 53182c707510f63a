"""Test inputs for the faces tests: the shared real clips, and clips generated with ffmpeg.

Real clips are read in place from ``../shared/media`` (tests skip when it is absent);
generated clips are made at test time in temporary folders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def clip(name: str) -> Path:
    """A real clip from ``shared/media/clips``; skips the test when it is not there."""
    path = MEDIA / "clips" / name
    if not path.is_file():
        pytest.skip(f"shared test media {path} not found")
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


# The 4K composite: kim's 1920x1080 frames scaled by these factors and overlaid at these
# corners of a 3840x2160 canvas (her face, ~355 px wide at 1080p, becomes ~300 and ~130 px).
COMPOSITE_4K = ((1622 / 1920, (200, 300)), (703 / 1920, (2600, 1400)))


def make_4k_composite(out: Path, seconds: float = 2.0) -> Path:
    """A 3840x2160 30 fps clip with two scaled copies of kim_1080p30_en composited in."""
    (s1, (x1, y1)), (s2, (x2, y2)) = COMPOSITE_4K
    src = clip("kim_1080p30_en.mp4")
    ffmpeg("-i", str(src), "-f", "lavfi", "-i",
           "gradients=s=3840x2160:r=30:speed=0.01:c0=0x304050:c1=0x807060,noise=alls=6",
           "-filter_complex",
           f"[0:v]split[a][b];[a]scale={round(1920 * s1)}:{round(1080 * s1)}[big];"
           f"[b]scale={round(1920 * s2)}:{round(1080 * s2)}[small];"
           f"[1:v][big]overlay={x1}:{y1}[t];[t][small]overlay={x2}:{y2}:shortest=1,"
           "format=yuv420p",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
           "-an", str(out))
    return out


def make_closeup_cut(out: Path, cut_frame: int = 120) -> Path:
    """kim_1080p30_en at 960x540 with a hard cut to a 2x close-up of her face at
    ``cut_frame`` (original audio kept): the shot change the analysis must find."""
    src = clip("kim_1080p30_en.mp4")
    ffmpeg("-i", str(src), "-filter_complex",
           "[0:v]split[a][b];[a]scale=960:540[w];"
           "[b]crop=960:540:480:60,scale=960:540[z];"
           f"[w][z]overlay=0:0:enable='gte(n\\,{cut_frame})',format=yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac", str(out))
    return out


def make_steady(out: Path, frame: int = 100, seconds: float = 3.0) -> Path:
    """One frame of kim_1080p30_en held still for ``seconds``, with fresh grain on every
    frame so that the detector sees a slightly different picture each time."""
    src = clip("kim_1080p30_en.mp4")
    ffmpeg("-i", str(src), "-vf",
           f"select=eq(n\\,{frame}),scale=960:540,loop=loop=-1:size=1,"
           "noise=alls=8:allf=t,format=yuv420p",
           "-r", "30", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "23", "-an", str(out))
    return out


def make_lavfi(out: Path, source: str, seconds: float = 2.0) -> Path:
    """A clip from an ffmpeg lavfi source (``testsrc2=size=1280x720:rate=25``, ...)."""
    ffmpeg("-f", "lavfi", "-i", f"{source}:duration={seconds}", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out))
    return out


def make_rotated(out: Path, rotation: int = 90, seconds: float = 2.0) -> Path:
    """kim_1080p30_en at 960x540 stored sideways (frames turned clockwise by ``rotation``)
    with a display rotation that turns them upright again, like a phone recording."""
    src = clip("kim_1080p30_en.mp4")
    turn = {90: "transpose=clock", 270: "transpose=cclock", 180: "hflip,vflip"}[rotation]
    tmp = out.with_suffix(".tmp.mp4")
    ffmpeg("-i", str(src), "-vf", f"scale=960:540,{turn},format=yuv420p", "-t", str(seconds),
           "-c:v", "libx264", "-preset", "ultrafast", "-an", str(tmp))
    ffmpeg("-display_rotation", str(rotation), "-i", str(tmp), "-c", "copy", str(out))
    tmp.unlink()
    return out
