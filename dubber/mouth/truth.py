"""Ground truth for the driver: the speaking face's mouth parameters on every frame of a
video, from the analysis pass's face mesh (what the driver is fitted and measured against).
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from dubber.errors import InputError

log = logging.getLogger(__name__)


def video_frame_times(path: str | Path) -> np.ndarray:
    """Presentation times of a video's frames in seconds from its first frame (VFR exact).

    Demuxes (does not decode) the first video stream.

    Returns:
        shape = (N,), float64, sorted.
    """
    pts: list[int] = []
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            stream = container.streams.video[0]
            tb = float(stream.time_base)
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                pts.append(packet.pts if packet.pts is not None else packet.dts or 0)
    except av.FFmpegError as exc:
        raise InputError(f"{path} is not a video FFmpeg can read "
                         f"({str(exc).splitlines()[0]})") from None
    if not pts:
        raise InputError(f"{path} has no video frames")
    p = np.sort(np.asarray(pts, np.int64))
    return (p - p[0]) * tb


def speaker_mouth(tracks) -> np.ndarray:
    """Per frame of an analysed video, the mouth parameters of the face that speaks.

    The face is the shot's speaker (its windows, else its selected track); on frames with
    no speaker, the only face on screen when there is exactly one.

    Args:
        tracks: a :class:`~dubber.faces.tracks_file.Tracks` whose tracks carry ``mouth``.

    Returns:
        shape = (frame_count, 3), float64: ``opening, width, rounding``, NaN where no
        speaking face was measured.
    """
    out = np.full((tracks.frame_count, 3), np.nan)
    for f in range(tracks.frame_count):
        ids = tracks.speakers_at(f) or tracks.faces_at(f)
        if len(ids) != 1 and not tracks.speakers_at(f):
            continue
        t = tracks.track(ids[0])
        if t.mouth is not None:
            out[f] = t.mouth[f - t.first]
    return out


def mouth_truth(video: str | Path, cache_dir: str | Path | None = None,
                preset: str = "fast") -> tuple[np.ndarray, np.ndarray]:
    """The speaking face's mouth parameters on every frame of ``video``.

    Runs (or reuses from the cache) the analysis pass.

    Returns:
        (times, params): shape = (N,) float64 seconds, shape = (N, 3) float64 (NaN where
        unknown).
    """
    from dubber.config import load_config
    from dubber.faces.analyze import analyze

    tracks = analyze(video, load_config(preset), cache_dir=cache_dir)
    params = speaker_mouth(tracks)
    times = video_frame_times(video)
    n = min(len(times), len(params))
    return times[:n], params[:n]
