"""Finding and running the ffmpeg executable used for encoding and muxing.

The pinned ``imageio-ffmpeg`` wheel carries a static ffmpeg 7 with x264, x265, ProRes and
FFV1, so a plain ``make setup`` is enough. ``DUBBER_FFMPEG`` points elsewhere (a studio's own
build); an ``ffmpeg`` on PATH is the last resort.
"""

from __future__ import annotations

import functools
import os
import shutil

from dubber.errors import RunError


@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable. Raises RunError when there is none."""
    env = os.environ.get("DUBBER_FFMPEG")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise RunError(f"DUBBER_FFMPEG={env} is not an executable file")
        return env
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found:
        return found
    raise RunError("no ffmpeg found: run `make setup` (it installs one) or set DUBBER_FFMPEG")
