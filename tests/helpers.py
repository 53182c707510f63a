"""Test helpers: real media from ../shared/media, generated clips, decoding outputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dubber.bench.media import ffmpeg, make_clip, make_tone  # noqa: F401  (the tests' makers)

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CLIPS = MEDIA / "clips"
SPEECH = MEDIA / "speech"

needs_media = pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared/media is not present")
needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/media is not present")


def media_clips() -> list[Path]:
    return sorted(CLIPS.glob("*")) if CLIPS.is_dir() else []


def speech_files() -> list[Path]:
    return sorted(SPEECH.glob("*")) if SPEECH.is_dir() else []


def video_pts(path: Path) -> list[int]:
    """Presentation timestamps of the decoded video frames, in stream time-base units."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def video_time_base(path: Path) -> Fraction:
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
        return Fraction(tb.numerator, tb.denominator)


def decoded_planes(path: Path, limit: int | None = None) -> list[list[np.ndarray]]:
    """Every decoded frame's planes (copies), cropped to the picture."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            planes = []
            for p in frame.planes:
                dtype = np.uint16 if "10" in frame.format.name or "12" in frame.format.name \
                    else np.uint8
                rows = np.frombuffer(p, dtype).reshape(p.height, p.line_size // np.dtype(dtype).itemsize)
                planes.append(rows[:, : p.width].copy())
            out.append(planes)
            if limit and len(out) >= limit:
                break
    return out


def audio_streams(path: Path) -> list[dict]:
    with av.open(str(path)) as c:
        out = []
        for s in c.streams.audio:
            dur = float(s.duration * s.time_base) if s.duration else None
            out.append({"codec": s.codec_context.name, "duration": dur,
                        "title": s.metadata.get("title") or s.metadata.get("handler_name", ""),
                        "language": s.metadata.get("language", ""),
                        "default": bool(s.disposition & av.stream.Disposition.default)})
        return out


def watermark_disc(box, shape) -> np.ndarray:
    """Where the watermark may change a face with tracked ``box``: its canonical square's
    disc (bool mask of the luma plane)."""
    from dubber.watermark import DISC_ZERO, FaceSquare

    sq = FaceSquare.from_box(box)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    c = sq.side / 2
    return np.hypot(cols - sq.x0 - c, rows - sq.y0 - c) <= c * DISC_ZERO + 1


def frames_changed_only_where(src, dst, tracks, allowed) -> int:
    """Check that ``dst`` differs from ``src`` (decoded planes) only where ``allowed`` says,
    elsewhere in the speakers' faces by no more than the invisible watermark does, and not
    at all on frames without a speaker; return how many frames changed where allowed.

    Args:
        allowed: (frame, speaker track ids, luma shape) -> bool mask of the luma plane.
    """
    assert len(src) == len(dst)
    changed = 0
    for f, (a, b) in enumerate(zip(src, dst)):
        diff = a[0] != b[0]
        speakers = tracks.speakers_at(f)
        if not speakers:
            assert not diff.any(), f"frame {f} has no speaker but was changed"
            continue
        region = allowed(f, speakers, diff.shape)
        mark = np.zeros_like(diff)
        for tid in speakers:
            mark |= watermark_disc(tracks.track(tid).box_at(f), diff.shape)
        assert not (diff & ~(region | mark)).any(), f"frame {f} changed outside the face"
        step = np.abs(a[0].astype(int) - b[0].astype(int))[mark & ~region]
        assert not len(step) or (step.max() <= 12 and step.mean() < 2), \
            f"frame {f}: the watermark shows"
        changed += bool((diff & region).any())
    return changed
