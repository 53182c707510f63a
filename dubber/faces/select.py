"""The faces the render loop re-renders, per frame, looked up from a tracks file.

:class:`FacesStage` is a stage ``stage(chunk, models, cfg) -> chunk`` that fills
``chunk.faces[i]`` with one :class:`Face` per selected track on frame ``i`` (an empty list
on frames with no speaker: those frames are not modified). Each face's lip polygon comes
from the face mesh on a full-resolution crop of that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.chunk import Chunk
from dubber.faces.crop import CropBox
from dubber.faces.landmarks import MESH_INPUT, Landmarker, lip_polygon, mesh_region, mouth_mask
from dubber.faces.tracks_file import Tracks
from dubber.faces.yuv import crop_rgb


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

    def mouth_mask(self, cb: CropBox, feather: float = 0.15) -> np.ndarray:
        """The soft mouth mask in the model crop ``cb``.

        Returns:
            shape = (cb.size, cb.size), float32 in [0, 1], around :meth:`lips`.
        """
        return mouth_mask(cb.to_crop(self.lips()), (cb.size, cb.size), feather)

    def lips(self) -> np.ndarray:
        """The outer lip contour, shape = (K, 2) float64 full-res pixels: the mesh's polygon,
        or without one an ellipse over the lower third of the box (where the mouth is on a
        frontal, upright face; for display-rotated video the polygon is the reliable source).
        """
        if self.lip_polygon is not None:
            return self.lip_polygon
        x0, y0, x1, y1 = self.box
        cx, cy = (x0 + x1) / 2, y0 + 0.78 * (y1 - y0)
        a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        return np.stack([cx + 0.25 * (x1 - x0) * np.cos(a),
                         cy + 0.1 * (y1 - y0) * np.sin(a)], axis=1)


class FaceSelector:
    """Looks up the selected faces of each frame and measures their lips.

    Args:
        tracks: the analysis (after :func:`dubber.faces.analyze.apply_face_choice`).
        landmarks: run the face mesh for lip polygons (False: boxes only).
    """

    def __init__(self, tracks: Tracks, landmarks: bool = True) -> None:
        self.tracks = tracks
        self.landmarks = landmarks
        self._meshes: dict[int, Landmarker] = {}

    def faces(self, chunk: Chunk) -> list[list[Face]]:
        """Per frame of ``chunk``, the faces to re-render."""
        out: list[list[Face]] = []
        lay = chunk.frames.layout
        for i, idx in enumerate(chunk.frame_indices.tolist()):
            row = []
            speakers = self.tracks.speakers_at(idx)
            # Each mesh graph holds ~25 MB of native memory: one per track while it is on
            # screen, closed on the first frame it is not (a gap starts tracking afresh),
            # so a film's memory does not grow with its number of tracks or frames.
            for tid in [t for t in self._meshes if t not in speakers]:
                self._meshes.pop(tid).close()
            for tid in speakers:
                box = self.tracks.track(tid).box_at(idx)
                poly = None
                if self.landmarks:
                    mesh = self._meshes.get(tid)
                    if mesh is None:
                        mesh = self._meshes[tid] = Landmarker()
                    region = mesh_region(box, lay.width, lay.height)
                    crop = crop_rgb(chunk.frames, i, region, MESH_INPUT,
                                    chunk.extra.get("color"))
                    pts = mesh.landmarks(crop, region, self.tracks.rotation)
                    poly = None if pts is None else lip_polygon(pts)
                row.append(Face(box, tid, poly))
            out.append(row)
        return out

    def close(self) -> None:
        for m in self._meshes.values():
            m.close()
        self._meshes.clear()


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
        self._selector: FaceSelector | None = None
        self._live: set[int] = set()

    def __call__(self, chunk: Chunk, models: object, cfg: object) -> Chunk:
        """Fill ``chunk.faces``, and list in ``chunk.extra["tracks_ended"]`` the tracks
        handed out so far whose last frame is in this chunk or before it: later stages may
        drop what they keep per track (the generator's reference frames) once done with it."""
        if self._selector is None:
            if self.tracks is None:
                raise RuntimeError("FacesStage used before its tracks were set")
            self._selector = FaceSelector(self.tracks, self.landmarks)
        chunk.faces = self._selector.faces(chunk)
        self._live.update(f.track_id for row in chunk.faces for f in row)
        end = int(chunk.frame_indices[-1]) if len(chunk.frame_indices) else -1
        ended = [t for t in self._live if self.tracks.track(t).last <= end]
        self._live.difference_update(ended)
        chunk.extra["tracks_ended"] = ended
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
