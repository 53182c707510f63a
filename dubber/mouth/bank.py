"""The mouth bank: an actor's own lower faces from the film, at full resolution.

For every track that will be dubbed, one pass over the video keeps, for every frame of the
track, the face mesh (full-resolution points), the mouth parameters
(:func:`dubber.mouth.params.mouth_params`), the head pose (:func:`pose_shape`) and the mean
colour of the lower face, and the hands around the face (:mod:`dubber.faces.hands`, when
looked for); and for the frames kept in the bank, the lower-face crop itself, in RGB at the
video's full resolution and bit depth. A frame whose lower face a hand covers is not kept:
its mouth would bring the hand with it. The renderer picks from these the
mouth each dubbed frame shows (:mod:`dubber.mouth.choose`) and warps it onto the frame
(:mod:`dubber.mouth.warp`).

Bounded: a track keeps at most ``max_frames`` crops. A longer track keeps whole runs of
consecutive frames (real motion), chosen for the diversity of their mouth opening (the
analysis pass's lip aperture): greedy farthest-point over the runs' opening statistics.
Non-speaking frames count too: a closed mouth is a shape.

On disk (``$DUBBER_CACHE/banks/KEY/``, one folder per video, tracks and settings): per
track ``T.json`` (the index), ``T.npz`` (per-frame points, params, pose, colour) and
``T.crops`` (the crops, raw, back to back; each read from the file when it is drawn and
let go after, so RAM stays flat however many frames a film's banks hold: a memory map
would keep every page it ever touched resident).
A bank whose files are missing or unreadable is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dubber.faces.crop import grid_box
from dubber.faces.hands import MAX_HANDS, NO_HANDS, HandFinder, covers
from dubber.faces.landmarks import MeshPool
from dubber.faces.tracks_file import Track, Tracks
from dubber.faces.yuv import crop_rgb
from dubber.media.color import ColorSpec, yuv_region_to_rgb
from dubber.media.frames import PixelLayout
from dubber.media.probe import VideoInfo
from dubber.mouth.geometry import CHIN, MOVING, PINNED, REGION, eye_distance, pose_shape
from dubber.mouth.params import mouth_params

log = logging.getLogger(__name__)

BANK_VERSION = 4  # 2: per-frame mouth detail; 3: the hands before the face; 4: tracked
# Crop margins around the lower-face points, in eye distances: sideways and up, and down
# (below the chin, where a dropping jaw goes).
CROP_MARGIN = 0.35
CROP_BELOW = 0.7
RUN = 10  # frames per run when a long track is thinned


@dataclass
class MouthBank:
    """One track's bank.

    Attributes:
        track_id: the track.
        frames: shape = (F,), int64: every frame of the track that the mesh read.
        points: shape = (F, 478, 2), float32: full-resolution coded pixels.
        params: shape = (F, 3), float32: opening, width, rounding.
        pose: shape = (F, P), float32: :func:`~dubber.mouth.geometry.pose_shape`.
        colour: shape = (F, 3), float32: mean RGB in [0, 1] of the lower face.
        detail: shape = (F,), float32: the mouth's sharpness, the variance of the Laplacian
            of the luma around the lips (:func:`mouth_detail`).
        kept: shape = (F,), bool: whether the frame's crop is in the bank.
        boxes: shape = (F, 4), int64: (x0, y0, x1, y1) of each kept crop (zeros otherwise).
        offsets: shape = (F,), int64: byte offset of each kept crop in ``crops``.
        crops: the file of the raw crops, or None when nothing is kept.
        dtype: uint8 or uint16 (the video's bit depth).
        hands: shape = (F, 2, 21, 2), float32: up to two hands around the face per frame
            (:class:`~dubber.faces.hands.HandFinder`), NaN where none; None when hands
            were not looked for.
    """

    track_id: int
    frames: np.ndarray
    points: np.ndarray
    params: np.ndarray
    pose: np.ndarray
    colour: np.ndarray
    detail: np.ndarray
    kept: np.ndarray
    boxes: np.ndarray
    offsets: np.ndarray
    crops: Path | None
    dtype: np.dtype
    hands: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.kept.sum())

    @property
    def origin(self) -> np.ndarray:
        """shape = (F,): the track each row comes from (all this one; see
        :class:`~dubber.mouth.actors.BankPool`)."""
        return np.full(len(self.frames), self.track_id, np.int64)

    @property
    def foreign(self) -> np.ndarray:
        """shape = (F,) bool: rows from another shot (none in a track's own bank)."""
        return np.zeros(len(self.frames), bool)

    def row(self, frame: int) -> int | None:
        """The row of ``frame`` in the per-frame arrays, or None (no mesh there)."""
        i = int(np.searchsorted(self.frames, frame))
        return i if i < len(self.frames) and self.frames[i] == frame else None

    def hands_at(self, frame: int) -> np.ndarray:
        """The hands found around the face on ``frame``: shape = (H, 21, 2), H = 0 when
        none (or no row, or hands not looked for)."""
        row = self.row(frame)
        if row is None or self.hands is None:
            return NO_HANDS
        h = self.hands[row]
        return h[np.all(np.isfinite(h), axis=(1, 2))]

    def crop(self, row: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The kept crop of ``row``: (RGB float32 in [0, 1], shape (h, w, 3); its box)."""
        if not self.kept[row] or self.crops is None:
            raise KeyError(f"frame {self.frames[row]} of track {self.track_id} is not kept")
        x0, y0, x1, y1 = (int(v) for v in self.boxes[row])
        n = (y1 - y0) * (x1 - x0) * 3
        raw = np.fromfile(self.crops, self.dtype, count=n, offset=int(self.offsets[row]))
        raw = raw.reshape(y1 - y0, x1 - x0, 3)
        return raw.astype(np.float32) / float(np.iinfo(self.dtype).max), (x0, y0, x1, y1)


def crop_box(points: np.ndarray, layout: PixelLayout) -> tuple[int, int, int, int]:
    """The full-resolution box the bank keeps around a face's lower part (on the chroma
    grid)."""
    eye = eye_distance(points)
    idx = list(set(REGION) | set(PINNED) | set(MOVING) | set(CHIN))
    p = points[idx]
    x0, y0 = p.min(0) - CROP_MARGIN * eye
    x1, y1 = p.max(0) + [CROP_MARGIN * eye, CROP_BELOW * eye]
    return grid_box((int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))),
                    layout)


def mouth_detail(luma: np.ndarray, points: np.ndarray, bit_depth: int = 8) -> float:
    """The sharpness of a mouth: the variance of the Laplacian of the luma (8-bit levels)
    in the lips' box grown by half a mouth width (what ``bench quality`` measures)."""
    import cv2

    from dubber.faces.landmarks import LIP_OUTER

    lips = points[list(LIP_OUTER)]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    g = 0.5 * (x1 - x0)
    h, w = luma.shape
    y0, y1 = max(int(y0 - g), 0), min(int(y1 + g), h)
    x0, x1 = max(int(x0 - g), 0), min(int(x1 + g), w)
    if y1 - y0 < 3 or x1 - x0 < 3:
        return 0.0
    region = luma[y0:y1, x0:x1].astype(np.float32) / float(1 << (bit_depth - 8))
    return float(cv2.Laplacian(region, cv2.CV_32F).var())


def choose_kept(track: Track, max_frames: int) -> np.ndarray:
    """Which frames of ``track`` keep their crop, shape = (len(track),) bool: all of them
    when there are at most ``max_frames``; otherwise whole runs of :data:`RUN` frames,
    greedily the run whose opening (mean, spread) is farthest from those already chosen."""
    n = len(track)
    keep = np.zeros(n, bool)
    if n <= max_frames:
        keep[:] = True
        return keep
    ap = np.nan_to_num(np.asarray(track.aperture, np.float64), nan=0.0)
    starts = np.arange(0, n, RUN)
    feats = np.array([[ap[s:s + RUN].mean(), ap[s:s + RUN].std()] for s in starts])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    chosen = [int(np.argmin(feats[:, 0]))]  # start from the most closed mouth
    dist = np.linalg.norm(feats - feats[chosen[0]], axis=1)
    while len(chosen) * RUN < max_frames and len(chosen) < len(starts):
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[k], axis=1))
    for k in chosen:
        keep[starts[k]:starts[k] + RUN] = True
    return keep


def bank_key(video_hash: str, tracks: Tracks, track_ids: Iterable[int], max_frames: int,
             hands: bool = True) -> str:
    """The cache key of the banks of ``track_ids``: the video's content, the tracks' boxes,
    the settings and :data:`BANK_VERSION`."""
    h = hashlib.sha256(f"bank {BANK_VERSION} {max_frames} {video_hash}"
                       f"{'' if hands else ' no-hands'}".encode())
    for tid in sorted(track_ids):
        t = tracks.track(tid)
        h.update(f"{tid} {t.first} {t.last}".encode())
        h.update(np.ascontiguousarray(t.boxes, np.float64).tobytes())
    return h.hexdigest()[:32]


def _write_index(folder: Path, tid: int, arrays: dict[str, np.ndarray], dtype: np.dtype) -> None:
    tmp = folder / f".{tid}.npz"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, folder / f"{tid}.npz")
    meta = {"version": BANK_VERSION, "track": tid, "dtype": np.dtype(dtype).name}
    (folder / f".{tid}.json").write_text(json.dumps(meta))
    os.replace(folder / f".{tid}.json", folder / f"{tid}.json")


def load_bank(folder: Path, tid: int) -> MouthBank | None:
    """The bank of track ``tid`` in ``folder``, or None when it is missing or unreadable."""
    if not (folder / f"{tid}.json").is_file():
        return None
    try:
        meta = json.loads((folder / f"{tid}.json").read_text())
        if meta.get("version") != BANK_VERSION:
            return None
        dtype = np.dtype(meta["dtype"])
        with np.load(folder / f"{tid}.npz") as z:
            a = {k: z[k] for k in z.files}
        crops_path = folder / f"{tid}.crops"
        size = crops_path.stat().st_size if crops_path.exists() else 0
        crops = crops_path if size else None
        bank = MouthBank(tid, a["frames"], a["points"], a["params"], a["pose"], a["colour"],
                         a["detail"], a["kept"], a["boxes"], a["offsets"], crops, dtype,
                         a.get("hands"))
        ends = bank.offsets[bank.kept] + np.prod(
            bank.boxes[bank.kept][:, 2:] - bank.boxes[bank.kept][:, :2], axis=1) * 3 * dtype.itemsize
        if len(ends) and int(ends.max()) > size:
            return None
        return bank
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        log.warning("mouth bank of track %d in %s is unreadable (%s): rebuilding it", tid,
                    folder, exc)
        return None


class _Builder:
    """Collects one track's bank while the video is decoded."""

    def __init__(self, folder: Path, track: Track, keep: np.ndarray, dtype: np.dtype) -> None:
        self.folder, self.track, self.keep, self.dtype = folder, track, keep, dtype
        self.rows: dict[str, list] = {k: [] for k in ("frames", "points", "kept", "boxes",
                                                      "offsets", "colour", "detail", "hands")}
        self.offset = 0
        self.file = open(folder / f".{track.id}.crops", "wb")

    def add(self, frame: int, points: np.ndarray, colour: np.ndarray, detail: float, rgb_box,
            rgb: np.ndarray | None, hands: np.ndarray | None = None) -> None:
        r = self.rows
        if hands is not None:
            row = np.full((MAX_HANDS, 21, 2), np.nan, np.float32)
            row[:len(hands)] = hands[:MAX_HANDS]
            r["hands"].append(row)
        r["detail"].append(detail)
        r["frames"].append(frame)
        r["points"].append(points.astype(np.float32))
        r["kept"].append(rgb is not None)
        r["boxes"].append(rgb_box if rgb is not None else (0, 0, 0, 0))
        r["offsets"].append(self.offset)
        if rgb is not None:
            top = np.iinfo(self.dtype).max
            raw = np.clip(np.rint(rgb * top), 0, top).astype(self.dtype)
            self.file.write(raw.tobytes())
            self.offset += raw.nbytes
        r["colour"].append(colour)

    def finish(self) -> None:
        self.file.close()
        os.replace(self.folder / f".{self.track.id}.crops", self.folder / f"{self.track.id}.crops")
        r = self.rows
        points = np.asarray(r["points"], np.float32).reshape(-1, 478, 2)
        arrays = {
            "frames": np.asarray(r["frames"], np.int64),
            "points": points,
            "params": mouth_params(points) if len(points) else np.zeros((0, 3), np.float32),
            "pose": pose_shape(points) if len(points) else np.zeros((0, 44), np.float32),
            "colour": np.asarray(r["colour"], np.float32).reshape(-1, 3),
            "detail": np.asarray(r["detail"], np.float32),
            "kept": np.asarray(r["kept"], bool),
            "boxes": np.asarray(r["boxes"], np.int64).reshape(-1, 4),
            "offsets": np.asarray(r["offsets"], np.int64),
        }
        if r["hands"]:
            arrays["hands"] = np.asarray(r["hands"], np.float32)
        _write_index(self.folder, self.track.id, arrays, self.dtype)

    def abandon(self) -> None:
        self.file.close()
        (self.folder / f".{self.track.id}.crops").unlink(missing_ok=True)


def bank_folder(key: str, cache: str | os.PathLike | None = None) -> Path:
    """``$DUBBER_CACHE/banks/KEY`` (default ``~/.cache/dubber/banks/KEY``)."""
    root = Path(cache) if cache else Path(os.environ.get("DUBBER_CACHE") or
                                          Path.home() / ".cache" / "dubber")
    return root / "banks" / key


def build_banks(
    info: VideoInfo,
    tracks: Tracks,
    track_ids: Iterable[int],
    max_frames: int,
    color: ColorSpec,
    cache: str | os.PathLike | None = None,
    chunk_frames: int = 16,
    progress: Callable[[int], None] | None = None,
    hands: bool = True,
) -> dict[int, MouthBank]:
    """The banks of ``track_ids``, from the cache or made in one pass over the video.

    Args:
        info: the video's probe.
        tracks: its analysis.
        track_ids: the tracks to bank (those that will be dubbed).
        max_frames: most crops kept per track (see the module docstring).
        color: the video's colour matrix and range.
        cache: the cache root (default ``$DUBBER_CACHE``, else ``~/.cache/dubber``).
        chunk_frames: frames decoded at a time.
        progress: called with the number of frames decoded so far.
        hands: look for hands before each face (:mod:`dubber.faces.hands`): keep them per
            frame, and keep no crop a hand covers.

    Returns:
        track id -> its bank (a track the mesh never read has an empty bank).
    """
    from dubber.faces.cache import content_hash
    from dubber.media.decode import read_chunks

    ids = sorted(set(track_ids))
    if not ids:
        return {}
    folder = bank_folder(bank_key(content_hash(info.path), tracks, ids, max_frames, hands),
                         cache)
    banks = {tid: load_bank(folder, tid) for tid in ids}
    todo = [tid for tid, b in banks.items() if b is None]
    if not todo:
        log.info("mouth banks of %d tracks from the cache (%s)", len(ids), folder)
        return banks
    folder.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(np.uint16 if info.bit_depth > 8 else np.uint8)
    builders = {tid: _Builder(folder, tracks.track(tid),
                              choose_kept(tracks.track(tid), max_frames), dtype) for tid in todo}
    first = min(tracks.track(t).first for t in todo)
    last = max(tracks.track(t).last for t in todo)
    meshes = MeshPool(info.width, info.height, tracks.rotation)
    finder = HandFinder(info.width, info.height, tracks.rotation) if hands else None
    try:
        with closing(read_chunks(info, chunk_frames, 0.0, full=True)) as chunks:
            for chunk in chunks:
                for i, idx in enumerate(chunk.frame_indices.tolist()):
                    if idx < first:
                        continue
                    on = [t for t in todo if tracks.track(t).box_at(idx) is not None]
                    meshes.keep_only(on)
                    if finder is not None:
                        finder.keep_only(on)
                    for tid in on:
                        _bank_frame(builders[tid], meshes, chunk, i, idx, color, info, finder)
                if progress:
                    progress(int(chunk.frame_indices[-1]) + 1)
                if int(chunk.frame_indices[-1]) >= last:
                    break
        for b in builders.values():
            b.finish()
    except BaseException:
        for b in builders.values():
            b.abandon()
        raise
    finally:
        meshes.close()
        if finder is not None:
            finder.close()
    for tid in todo:
        banks[tid] = load_bank(folder, tid)
    log.info("mouth banks: %s", ", ".join(f"track {t}: {len(b)} crops of {len(b.frames)} "
                                          f"frames" for t, b in banks.items() if b))
    return banks


def _bank_frame(builder: _Builder, meshes: MeshPool, chunk, i: int, idx: int,
                color: ColorSpec, info: VideoInfo, finder: HandFinder | None = None) -> None:
    track = builder.track
    box = track.box_at(idx)
    pts = meshes.points(track.id, chunk.frames, i, box, color)
    if pts is None:
        return
    rgb = None
    cb = crop_box(pts, chunk.frames.layout)
    hands = finder.find(track.id, chunk.frames, i, box, color) if finder is not None else None
    hidden = hands is not None and covers(hands, pts[list(REGION)])
    if builder.keep[idx - track.first] and not hidden:
        rgb = yuv_region_to_rgb(chunk.frames, i, cb, color)
        colour = rgb.reshape(-1, 3).mean(0)
    else:
        colour = crop_rgb(chunk.frames, i, cb, 32, color).reshape(-1, 3).mean(0) / 255.0
    detail = mouth_detail(chunk.frames.planes(i)[0], pts, info.bit_depth)
    builder.add(idx, pts, colour.astype(np.float32), detail, cb, rgb, hands)
