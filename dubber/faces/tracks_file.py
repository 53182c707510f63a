"""The tracks file: what the analysis pass found, as small human-editable JSON.

Schema (``"schema": "dubber.tracks/1"``)::

    {
      "schema": "dubber.tracks/1",
      "video": {"width": 1920, "height": 1080,       # coded pixels (rotation not applied)
                "rotation": 0,                       # display rotation, degrees CCW
                "frame_rate": "30/1", "frame_count": 224},
      "audio": true,                   # false: no original audio, the largest face was taken
      "settings": {...},               # the faces configuration that produced this file
      "key": "9f2c...",                # cache key: input content + settings
      "tracks": [
        {"id": 0,                      # stable within the file; never reused across a cut
         "first": 0, "last": 120,      # inclusive frame range (one shot at most)
         "boxes": [[x0, y0, x1, y1], ...],   # one per frame first..last, smoothed,
                                             # full-resolution coded pixels, float
         "scores": [0.93, ...],        # detector score per frame; 0 = bridged gap
         "aperture": [0.12, ...],      # lip aperture per frame (inner-lip gap / eye
                                       # distance), null where the mesh failed
         "speaking": [0.61, ...],      # speaking score per frame: the sync model's
                                       # confidence that the lips move with the original
                                       # audio at offset ~0 (dubber.sync.speaker), 0 = not
         "mouth": [[0.12, 0.55, 0.31], ...],  # optional: opening, width, rounding per frame
                                       # (dubber.mouth.params units), null where unknown
         "calibration": {...}}         # optional: this actor's mouth calibration
                                       # (dubber.mouth.calibrate.Calibration.to_json)
      ],
      "shots": [
        {"start": 0, "end": 120,       # inclusive frame range
         "selected_track": 0,          # the track that speaks most in the shot, or null
         "windows": [                  # who speaks when inside the shot
           {"start": 0, "end": 89, "track": 0}, ...]}
      ]
    }

Editing rules (``dub --tracks FILE``): inside a shot, a frame covered by a window is
re-rendered for that window's track; a shot with an empty ``windows`` list and a
``selected_track`` is re-rendered for that track on all of its frames; ``selected_track:
null`` with no windows leaves the shot untouched. Boxes may be edited too; ``aperture``,
``speaking`` and ``mouth`` are informative only. A ``calibration`` may be edited (its gains
and offsets) or deleted (it is then fitted again). Files without ``mouth`` or
``calibration`` (older analyses) stay valid.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dubber.errors import InputError, OutputError
from dubber.files import temp_beside

SCHEMA = "dubber.tracks/1"


@dataclass(frozen=True)
class Track:
    """One face over consecutive frames of one shot.

    Attributes:
        id: track id.
        first, last: inclusive frame range.
        boxes: shape = (n, 4), float64, (x0, y0, x1, y1) full-res coded pixels, n = last-first+1.
        scores: shape = (n,), float64, detector score (0 on bridged frames).
        aperture: shape = (n,), float64, lip aperture (NaN where unknown).
        speaking: shape = (n,), float64, speaking score (0 when not speaking).
        mouth: shape = (n, 3), float64, ``opening, width, rounding`` per frame
            (:mod:`dubber.mouth.params` units, NaN where unknown), or None (older files).
        calibration: this actor's mouth calibration as JSON
            (:meth:`dubber.mouth.calibrate.Calibration.to_json`), or None.
        lips: shape = (n, K, 2), float32: the face-mesh points of
            :data:`dubber.sync.features.MESH_POINTS` per frame, full-res coded pixels, NaN
            where the mesh failed; filled by the analysis pass, not stored in the file
            (None when the track was read from a file).
    """

    id: int
    first: int
    last: int
    boxes: np.ndarray
    scores: np.ndarray
    aperture: np.ndarray
    speaking: np.ndarray
    mouth: np.ndarray | None = None
    calibration: dict[str, Any] | None = None
    lips: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return self.last - self.first + 1

    def box_at(self, frame: int) -> tuple[float, float, float, float] | None:
        """The box on ``frame``, or None outside the track."""
        if not self.first <= frame <= self.last:
            return None
        return tuple(float(v) for v in self.boxes[frame - self.first])  # type: ignore[return-value]

    @property
    def size(self) -> float:
        """Median box side (geometric mean of width and height), pixels."""
        wh = self.boxes[:, 2:] - self.boxes[:, :2]
        return float(np.median(np.sqrt(np.prod(np.clip(wh, 0, None), axis=1))))


def _optional_fields(t: Track) -> dict[str, Any]:
    """The optional per-track entries, only when the track has them."""
    out: dict[str, Any] = {}
    if t.mouth is not None:
        out["mouth"] = [None if not np.all(np.isfinite(m)) else np.round(m, 4).tolist()
                        for m in t.mouth]
    if t.calibration is not None:
        out["calibration"] = t.calibration
    return out


@dataclass(frozen=True)
class Window:
    """A run of frames ``start .. end`` (inclusive) in which ``track`` speaks."""

    start: int
    end: int
    track: int


@dataclass(frozen=True)
class Shot:
    """Frames ``start .. end`` (inclusive) between two cuts."""

    start: int
    end: int
    selected_track: int | None = None
    windows: tuple[Window, ...] = ()


@dataclass(frozen=True)
class Tracks:
    """The result of the analysis pass (see the module docstring for the JSON form)."""

    width: int
    height: int
    frame_rate: Fraction
    frame_count: int
    tracks: tuple[Track, ...]
    shots: tuple[Shot, ...]
    has_audio: bool = True
    settings: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    rotation: int = 0  # display rotation of the video, degrees counter-clockwise

    def __post_init__(self) -> None:
        # Look-ups the render loop makes on every frame of a film: by id, and by bisection.
        object.__setattr__(self, "_by_id", {t.id: t for t in self.tracks})
        object.__setattr__(self, "_shot_starts", [s.start for s in self.shots])

    def track(self, track_id: int) -> Track:
        return self._by_id[track_id]  # type: ignore[attr-defined]

    def shot_of(self, frame: int) -> Shot | None:
        k = bisect.bisect_right(self._shot_starts, frame) - 1  # type: ignore[attr-defined]
        if k >= 0 and self.shots[k].start <= frame <= self.shots[k].end:
            return self.shots[k]
        return None

    def speakers_at(self, frame: int) -> list[int]:
        """Ids of the tracks to re-render on ``frame`` by the shot's windows / selection."""
        shot = self.shot_of(frame)
        if shot is None:
            return []
        if shot.windows:
            ids = [w.track for w in shot.windows if w.start <= frame <= w.end]
        else:
            ids = [] if shot.selected_track is None else [shot.selected_track]
        return [i for i in dict.fromkeys(ids) if self._has(i, frame)]

    def faces_at(self, frame: int) -> list[int]:
        """Ids of every track present on ``frame``."""
        return [t.id for t in self.tracks if t.first <= frame <= t.last]

    def _has(self, track_id: int, frame: int) -> bool:
        try:
            return self.track(track_id).box_at(frame) is not None
        except KeyError:
            return False

    # -- JSON -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "video": {
                "width": self.width,
                "height": self.height,
                "rotation": self.rotation,
                "frame_rate": str(self.frame_rate),
                "frame_count": self.frame_count,
            },
            "audio": self.has_audio,
            "settings": self.settings,
            "key": self.key,
            "tracks": [
                {
                    "id": t.id,
                    "first": t.first,
                    "last": t.last,
                    "boxes": np.round(t.boxes, 1).tolist(),
                    "scores": np.round(t.scores, 3).tolist(),
                    "aperture": [None if np.isnan(a) else round(float(a), 4) for a in t.aperture],
                    "speaking": np.round(t.speaking, 3).tolist(),
                    **_optional_fields(t),
                }
                for t in self.tracks
            ],
            "shots": [
                {
                    "start": s.start,
                    "end": s.end,
                    "selected_track": s.selected_track,
                    "windows": [
                        {"start": w.start, "end": w.end, "track": w.track} for w in s.windows
                    ],
                }
                for s in self.shots
            ],
        }

    def save(self, path: str | Path) -> None:
        """Write the JSON atomically (temp file + rename)."""
        path = Path(path)
        try:
            tmp = temp_beside(path, ".json")
        except OSError as exc:
            raise OutputError(f"cannot write the tracks file {path}: {exc.strerror}") from None
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, separators=(",", ":"))
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "tracks file") -> "Tracks":
        try:
            if data.get("schema") != SCHEMA:
                raise ValueError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
            v = data["video"]
            tracks = []
            for t in data["tracks"]:
                first, last = int(t["first"]), int(t["last"])
                n = last - first + 1
                boxes = np.asarray(t["boxes"], np.float64).reshape(-1, 4)
                ap = np.array([np.nan if a is None else a for a in t.get("aperture", [None] * n)],
                              np.float64)
                scores = np.asarray(t.get("scores", [1.0] * n), np.float64)
                speaking = np.asarray(t.get("speaking", [0.0] * n), np.float64)
                if n < 1 or not len(boxes) == len(ap) == len(scores) == len(speaking) == n:
                    raise ValueError(f"track {t['id']}: per-frame lists must have {n} entries")
                mouth = None
                if t.get("mouth") is not None:
                    mouth = np.array([[np.nan] * 3 if m is None else m for m in t["mouth"]],
                                     np.float64).reshape(-1, 3)
                    if len(mouth) != n:
                        raise ValueError(f"track {t['id']}: mouth must have {n} entries")
                cal = t.get("calibration")
                if cal is not None and not isinstance(cal, dict):
                    raise ValueError(f"track {t['id']}: calibration must be an object")
                tracks.append(Track(int(t["id"]), first, last, boxes, scores, ap, speaking,
                                    mouth, cal))
            ids = [t.id for t in tracks]
            if len(set(ids)) != len(ids):
                raise ValueError("track ids are not unique")
            shots = []
            for s in data["shots"]:
                sel = s.get("selected_track")
                wins = tuple(
                    Window(int(w["start"]), int(w["end"]), int(w["track"]))
                    for w in s.get("windows", [])
                )
                for tid in [sel] + [w.track for w in wins]:
                    if tid is not None and int(tid) not in ids:
                        raise ValueError(f"shot {s['start']}-{s['end']} names unknown track {tid}")
                shot = Shot(int(s["start"]), int(s["end"]), None if sel is None else int(sel),
                            wins)
                if shot.end < shot.start or (shots and shot.start <= shots[-1].end):
                    raise ValueError(f"shot {shot.start}-{shot.end} is empty, out of order or "
                                     "overlaps the one before")
                if any(w.start < shot.start or w.end > shot.end for w in wins):
                    raise ValueError(f"a window of shot {shot.start}-{shot.end} lies outside it")
                shots.append(shot)
            return cls(
                width=int(v["width"]),
                height=int(v["height"]),
                frame_rate=Fraction(v["frame_rate"]),
                frame_count=int(v["frame_count"]),
                tracks=tuple(tracks),
                shots=tuple(shots),
                has_audio=bool(data.get("audio", True)),
                settings=dict(data.get("settings", {})),
                key=str(data.get("key", "")),
                rotation=int(v.get("rotation", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source} is not a valid tracks file: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> "Tracks":
        """Read and validate a tracks file; :class:`InputError` when it is not one."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"tracks file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read tracks file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path} is not a valid tracks file")
        return cls.from_json(data, str(path))
