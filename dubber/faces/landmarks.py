"""Face mesh landmarks on a crop around a tracked face; lip polygon and aperture.

MediaPipe's face mesh (478 points with the attention model, shipped in the mediapipe
0.10.21 wheel) runs on a square full-resolution crop around each tracked box, resized to
``MESH_INPUT`` pixels. One mesh instance per track runs in tracking mode, so it re-detects
the face inside the crop only when it loses it.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from dubber.faces.detect import quiet_native_stderr
from dubber.faces.orient import points_to_coded, upright
from dubber.faces.yuv import crop_rgb
from dubber.media.color import ColorSpec
from dubber.media.frames import FrameBatch

log = logging.getLogger(__name__)

# MediaPipe face-mesh indices, in order around each contour.
LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291,
             409, 270, 269, 267, 0, 37, 39, 40, 185)
LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
             415, 310, 311, 312, 13, 82, 81, 80, 191)
# Upper / lower inner-lip pairs measured for the aperture, and the outer eye corners.
_APERTURE_PAIRS = ((82, 87), (13, 14), (312, 317))
_EYE_CORNERS = (33, 263)

# The mesh's input side in pixels: crops are resized to this whatever the face size.
MESH_INPUT = 256
# Crop side around the face box for the mesh, in box sides.
MESH_MARGIN = 1.8


def mesh_region(box: Sequence[float], width: int, height: int,
                margin: float = MESH_MARGIN) -> tuple[int, int, int, int]:
    """The square full-res region (clipped to the frame) on which the mesh runs."""
    x0, y0, x1, y1 = box
    side = margin * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx0 = int(np.clip(round(cx - side / 2), 0, width - 1))
    ry0 = int(np.clip(round(cy - side / 2), 0, height - 1))
    rx1 = int(np.clip(round(cx + side / 2), rx0 + 1, width))
    ry1 = int(np.clip(round(cy + side / 2), ry0 + 1, height))
    return rx0, ry0, rx1, ry1


class Landmarker:
    """MediaPipe face mesh for one track (tracking state is per instance)."""

    def __init__(self) -> None:
        with quiet_native_stderr():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5,
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # start the graph
        self._quiet = True

    def landmarks(self, crop: np.ndarray, region: tuple[int, int, int, int],
                  rotation: int = 0) -> np.ndarray | None:
        """The 478 mesh points of the face in ``crop``, in full-resolution coded pixels.

        Args:
            crop: shape = (s, s, 3), uint8 RGB: ``region`` of the coded frame resized to a
                square.
            region: (x0, y0, x1, y1) full-resolution coded pixels that ``crop`` shows.
            rotation: display rotation; the mesh sees the crop upright.

        Returns:
            shape = (478, 2), float64 (x, y), or None when no face is found.
        """
        if self._quiet:  # MediaPipe warns on fd 2 the first time it projects a face
            with quiet_native_stderr():
                res = self._mesh.process(upright(crop, rotation))
        else:
            res = self._mesh.process(upright(crop, rotation))
        if not res.multi_face_landmarks:
            return None
        self._quiet = False
        lm = res.multi_face_landmarks[0].landmark
        pts = np.array([(p.x, p.y) for p in lm], np.float64)
        if rotation:  # normalised upright-crop coordinates -> normalised coded ones
            pts = points_to_coded(pts, rotation, 1.0, 1.0)
        x0, y0, x1, y1 = region
        return pts * [x1 - x0, y1 - y0] + [x0, y0]

    def close(self) -> None:
        self._mesh.close()


class TrackGraphs:
    """Native graphs (MediaPipe's), one per track on screen: made on the track's first
    frame by :meth:`make` and closed on the first frame it is not (:meth:`keep_only`); a
    track that comes back starts afresh. Each keeps its own tracking state.

    Args:
        width, height: the frames' coded size.
        rotation: display rotation (the graphs see each crop upright).
    """

    def __init__(self, width: int, height: int, rotation: int = 0) -> None:
        self.size = (width, height)
        self.rotation = rotation
        self.calls = 0  # graph evaluations so far
        self._graphs: dict[object, object] = {}

    def make(self):
        """A new graph (with a ``close()``)."""
        raise NotImplementedError

    def graph(self, key: object):
        """Track ``key``'s graph, made on first use; counts a call."""
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self.make()
        self.calls += 1
        return graph

    def keep_only(self, keys) -> None:
        """Close the graphs of every track not in ``keys`` (they are off screen)."""
        for key in [k for k in self._graphs if k not in keys]:
            self._graphs.pop(key).close()

    def close(self) -> None:
        self.keep_only(())


class MeshPool(TrackGraphs):
    """The face-mesh graphs of the tracks on screen: one per track, closed when it leaves.

    Each graph holds ~25 MB of native memory and its own tracking state, so there is one
    per track while the track is on screen, made on its first frame and closed on the first
    frame it is not (:meth:`keep_only`); a track that comes back starts tracking afresh.
    A film's memory thus grows neither with its length nor with its number of tracks. The
    analysis pass and the render's face lookup both measure faces through this.
    """

    def make(self) -> Landmarker:
        return Landmarker()

    def points(self, key: object, frames: FrameBatch, i: int, box: Sequence[float],
               color: ColorSpec | None = None) -> np.ndarray | None:
        """The mesh of track ``key``'s face ``box`` on frame ``i`` of ``frames``.

        Returns:
            shape = (478, 2), float64 full-resolution coded pixels, or None when the mesh
            finds no face.
        """
        region = mesh_region(box, *self.size)
        crop = crop_rgb(frames, i, region, MESH_INPUT, color)
        return self.graph(key).landmarks(crop, region, self.rotation)


def lip_polygon(points: np.ndarray) -> np.ndarray:
    """The outer lip contour, shape = (20, 2), from mesh points of shape (478, 2)."""
    return points[list(LIP_OUTER)]


def lip_aperture(points: np.ndarray) -> float:
    """Mouth opening: mean inner-lip gap over the distance between the outer eye corners.

    Args:
        points: shape = (478, 2), any pixel scale.

    Returns:
        About 0 for a closed mouth, 0.3 to 0.5 wide open.
    """
    gaps = [np.linalg.norm(points[a] - points[b]) for a, b in _APERTURE_PAIRS]
    eyes = np.linalg.norm(points[_EYE_CORNERS[0]] - points[_EYE_CORNERS[1]])
    return float(np.mean(gaps) / max(eyes, 1e-6))
