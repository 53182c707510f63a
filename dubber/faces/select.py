"""The faces the render loop re-renders, per frame, looked up from a tracks file.

:class:`FacesStage` is a stage ``stage(chunk, models, cfg) -> chunk`` that fills
``chunk.faces[i]`` with one :class:`Face` per selected track on frame ``i`` (an empty list
on frames with no speaker: those frames are not modified). Each face's lip polygon comes
from the face mesh on a full-resolution crop of that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dubber.chunk import Chunk
from dubber.faces.landmarks import MeshPool, lip_polygon
from dubber.faces.mouth_region import box_lips
from dubber.faces.tracks_file import Tracks


@dataclass(frozen=True)
class Face:
    """One face to re-render on one frame.

    Attributes:
        box: (x0, y0, x1, y1) float, full-resolution coded pixels, smoothed.
        track_id: the track it belongs to (stable within the tracks file).
        lip_polygon: shape = (20, 2), float64 (x, y) full-res pixels, the outer lip contour
            from the face mesh; None when the mesh failed on this frame.
    """

    box: tuple[float, float, float, float]
    track_id: int
    lip_polygon: np.ndarray | None = None

    def lips(self) -> np.ndarray:
        """The outer lip contour, shape = (K, 2) float64 full-res pixels: the mesh's polygon,
        or without one :func:`~dubber.faces.mouth_region.box_lips`."""
        return self.lip_polygon if self.lip_polygon is not None else box_lips(self.box)


class FaceSelector:
    """Looks up the selected faces of each frame and measures their lips.

    Args:
        tracks: the analysis (after :func:`dubber.faces.analyze.apply_face_choice`).
        landmarks: run the face mesh for lip polygons (False: boxes only).
        known: (track id, frame) -> the face's mesh points when they are known already
            (the mouth banks have them), else None; the mesh runs only where it says None.
    """

    def __init__(self, tracks: Tracks, landmarks: bool = True,
                 known: Callable[[int, int], np.ndarray | None] | None = None) -> None:
        self.tracks = tracks
        self.landmarks = landmarks
        self.known = known
        self._meshes: MeshPool | None = None

    def faces(self, chunk: Chunk) -> list[list[Face]]:
        """Per frame of ``chunk``, the faces to re-render."""
        out: list[list[Face]] = []
        lay = chunk.frames.layout
        if self._meshes is None:
            self._meshes = MeshPool(lay.width, lay.height, self.tracks.rotation)
        for i, idx in enumerate(chunk.frame_indices.tolist()):
            row = []
            speakers = self.tracks.speakers_at(idx)
            self._meshes.keep_only(speakers)
            for tid in speakers:
                box = self.tracks.track(tid).box_at(idx)
                poly = None
                if self.landmarks:
                    pts = self.known(tid, idx) if self.known is not None else None
                    if pts is None:
                        pts = self._meshes.points(tid, chunk.frames, i, box, chunk.color)
                    poly = None if pts is None else lip_polygon(pts)
                row.append(Face(box, tid, poly))
            out.append(row)
        return out

    def close(self) -> None:
        if self._meshes is not None:
            self._meshes.close()


class FacesStage:
    """A render stage ``stage(chunk, models, cfg) -> chunk`` that fills ``chunk.faces``.

    Args:
        tracks: the analysis; may instead be set later through :attr:`tracks` (the CLI runs
            the analysis once the render has checked its inputs and output), but before the
            first chunk.
        landmarks: measure lip polygons with the face mesh.
    """

    def __init__(self, tracks: Tracks | None = None, landmarks: bool = True) -> None:
        self.tracks = tracks
        self.landmarks = landmarks
        # (track id, frame) -> known mesh points, or None (see FaceSelector); may be set
        # later, like tracks.
        self.known: Callable[[int, int], np.ndarray | None] | None = None
        self._selector: FaceSelector | None = None
        self._live: set[int] = set()

    def __call__(self, chunk: Chunk, models: object, cfg: object) -> Chunk:
        """Fill ``chunk.faces``, and list in ``chunk.tracks_ended`` the tracks
        handed out so far whose last frame is in this chunk or before it: later stages may
        drop what they keep per track (the generator's reference frames) once done with it."""
        if self._selector is None:
            if self.tracks is None:
                raise RuntimeError("FacesStage used before its tracks were set")
            self._selector = FaceSelector(self.tracks, self.landmarks, self.known)
        chunk.faces = self._selector.faces(chunk)
        self._live.update(f.track_id for row in chunk.faces for f in row)
        end = int(chunk.frame_indices[-1]) if len(chunk.frame_indices) else -1
        ended = [t for t in self._live if self.tracks.track(t).last <= end]
        self._live.difference_update(ended)
        chunk.tracks_ended = ended
        return chunk

    def reset(self) -> None:
        """Forget the state carried from chunk to chunk (the face mesh's tracking): a
        segment of a resumable render starts as if the render started there."""
        self.close()
        self._selector = None
        self._live.clear()

    def close(self) -> None:
        if self._selector is not None:
            self._selector.close()
