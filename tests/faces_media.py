"""Test inputs for the faces tests: the shared real clips, and clips generated with ffmpeg.

Real clips are read in place from ``../shared/media`` (tests skip when it is absent);
generated clips are made at test time in temporary folders.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from dubber.bench import media
from dubber.bench.media import COMPOSITE_4K  # noqa: F401  (the tests check boxes against it)

MEDIA = media.SHARED_MEDIA


def clip(name: str) -> Path:
    """A real clip from ``shared/media/clips``; skips the test when it is not there."""
    path = MEDIA / "clips" / name
    if not path.is_file():
        pytest.skip(f"shared test media {path} not found")
    return path


def _needs_kim(make):
    """``make`` (a :mod:`dubber.bench.media` maker built on kim_1080p30_en), skipping the
    test when the shared clip is absent."""
    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        clip("kim_1080p30_en.mp4")
        return make(*args, **kwargs)
    return wrapper


make_4k_composite = _needs_kim(media.make_4k_composite)
make_closeup_cut = _needs_kim(media.make_closeup_cut)
make_steady = _needs_kim(media.make_steady)
make_rotated = _needs_kim(media.make_rotated)
