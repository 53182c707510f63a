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


FRONTAL = 0.5  # profile ratio (dubber.sync.features.profile_ratio) up to which a face
# counts as frontal: measured there, frontal faces 0.0-0.5, a 3/4 view 0.6-0.85


def speaker_ids(tracks) -> list[int | None]:
    """Per frame, the track id of the face that speaks: the shot's speaker (its windows,
    else its selected track); on frames with no speaker, the only face on screen when
    there is exactly one; else None."""
    out: list[int | None] = []
    for f in range(tracks.frame_count):
        ids = tracks.speakers_at(f) or tracks.faces_at(f)
        out.append(ids[0] if ids and (len(ids) == 1 or tracks.speakers_at(f)) else None)
    return out


def speaker_mouth(tracks) -> np.ndarray:
    """Per frame of an analysed video, the mouth parameters of the face that speaks
    (:func:`speaker_ids`).

    Args:
        tracks: a :class:`~dubber.faces.tracks_file.Tracks` whose tracks carry ``mouth``.

    Returns:
        shape = (frame_count, 3), float64: ``opening, width, rounding``, NaN where no
        speaking face was measured.
    """
    out = np.full((tracks.frame_count, 3), np.nan)
    for f, tid in enumerate(speaker_ids(tracks)):
        t = tracks.track(tid) if tid is not None else None
        if t is not None and t.mouth is not None:
            out[f] = t.mouth[f - t.first]
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def speaker_profile(video: str | Path, cache_dir: str | Path | None = None,
                    preset: str = "fast") -> np.ndarray:
    """Per frame of ``video``, how far the speaking face is turned: the sync module's
    profile ratio (0 frontal, towards 1 in profile) of its face mesh; NaN where unknown.

    The tracks file keeps no mesh points, so this runs the face mesh again (the sync
    module's pass, about as long as the analysis) and matches each frame's speaker by its
    box; the result is cached beside the analyses (``mouth-profile/KEY.npz``).

    Returns:
        shape = (N,), float64, N as :func:`mouth_truth`'s frames.
    """
    from dubber.config import load_config
    from dubber.faces import cache
    from dubber.faces.analyze import analyze
    from dubber.sync.data import analyse_tracks
    from dubber.sync.features import profile_ratio

    tracks = analyze(video, load_config(preset), cache_dir=cache_dir)
    path = cache.cache_dir(cache_dir).parent / "mouth-profile" / f"{tracks.key}.npz"
    if tracks.key and path.is_file():
        return np.load(path)["ratio"]
    meshed, _, _ = analyse_tracks(video, load_config(preset))
    ratio = np.full(tracks.frame_count, np.nan)
    for f, tid in enumerate(speaker_ids(tracks)):
        box = tracks.track(tid).box_at(f) if tid is not None else None
        if box is None:
            continue
        best, points = 0.3, None  # a match must overlap the speaker's box this much
        for t in meshed.tracks:
            if t.lips is not None and t.first <= f <= t.last:
                iou = _iou(np.asarray(box), t.boxes[f - t.first])
                if iou > best:
                    best, points = iou, t.lips[f - t.first]
        if points is not None and np.all(np.isfinite(points)):
            ratio[f] = profile_ratio(points.astype(np.float64))
    if tracks.key:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, ratio=ratio)
    return ratio


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
