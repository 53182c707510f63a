"""Face detectors behind one interface: an RGB image in, boxes in its pixels out.

Two backends:

- ``mediapipe`` (default): MediaPipe's full-range BlazeFace model, shipped inside the
  mediapipe 0.10.21 wheel, so nothing is downloaded. It sees a 192x192 letterboxed copy of
  its input; faces narrower than about 6% of the input are missed, which is why
  :mod:`dubber.faces.tiles` also runs it on overlapping tiles and around known faces.
- ``s3fd``: the paper's S3FD through face-alignment. Its weights are never downloaded: they
  are used only when ``s3fd-619a316812.pth`` is already in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``), otherwise :class:`~dubber.errors.WeightsError` names
  the file and the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from dubber.errors import UsageError, WeightsError

log = logging.getLogger(__name__)

S3FD_FILE = "s3fd-619a316812.pth"


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) float pixels in the image given to the detector (or, once
            mapped, in full-resolution coded pixels).
        score: detector confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    score: float

    @property
    def size(self) -> float:
        """Side of the box: the geometric mean of width and height, pixels."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> "Detection":
        """The box offset by (dx, dy) then multiplied by ``factor``."""
        x0, y0, x1, y1 = self.box
        return Detection(
            ((x0 + dx) * factor, (y0 + dy) * factor, (x1 + dx) * factor, (y1 + dy) * factor),
            self.score,
        )


class FaceDetector(Protocol):
    """What every backend provides."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one image.

        Args:
            image: shape = (H, W, 3), uint8 RGB, C-contiguous.

        Returns:
            Detections with boxes in the image's pixels, any order.
        """
        ...


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code (TensorFlow Lite, absl) writes straight to file
    descriptor 2 while MediaPipe graphs start; Python's own stderr is unaffected after."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MediaPipeDetector:
    """MediaPipe's BlazeFace on whole images.

    Args:
        min_score: detections below this confidence are dropped.
        short_range: the short-range model (faces filling much of the image, as in a
            window around a known face) instead of the full-range one (``model_selection``
            0 and 1). The full-range model misses a fifth of the frames of some close-ups
            that the short-range one finds on all of them.
    """

    def __init__(self, min_score: float = 0.5, short_range: bool = False) -> None:
        with quiet_native_stderr():
            import mediapipe as mp  # here: it loads TensorFlow Lite and logs on first use

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=0 if short_range else 1, min_detection_confidence=min_score
            )
            self._detector.process(np.zeros((64, 64, 3), np.uint8))  # start the graph

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        result = self._detector.process(np.ascontiguousarray(image))
        out = []
        for det in result.detections or ():
            rb = det.location_data.relative_bounding_box
            x0, y0 = rb.xmin * w, rb.ymin * h
            out.append(Detection((x0, y0, x0 + rb.width * w, y0 + rb.height * h), det.score[0]))
        return out

    def close(self) -> None:
        self._detector.close()


def s3fd_weights_path() -> Path:
    """Where the S3FD weights must be: the torch hub checkpoint cache."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / S3FD_FILE


class S3FDDetector:
    """S3FD (Zhang et al. 2017) from face-alignment, with weights from the torch hub cache.

    Args:
        min_score: detections below this confidence are dropped.
        device: torch device string.
        weights: the ``.pth`` state dict; default :func:`s3fd_weights_path`. Loaded with
            ``weights_only=True`` (no pickled code runs).
    """

    def __init__(self, min_score: float = 0.5, device: str = "cpu", weights: Path | None = None):
        path = Path(weights) if weights else s3fd_weights_path()
        if not path.is_file():
            raise WeightsError(
                f"the s3fd detector needs its weights {path.name} in {path.parent} "
                "(nothing is downloaded at run time); copy the file there or use "
                "--detector mediapipe"
            )
        try:
            from face_alignment.detection.sfd.sfd_detector import SFDDetector
        except ImportError as exc:
            raise UsageError(
                "the s3fd detector needs face-alignment: pip install -e .[s3fd] "
                f"({exc})"
            ) from None
        self._device = device
        try:
            self._net = SFDDetector(device, path_to_detector=str(path), filter_threshold=min_score)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(f"{path} is not an S3FD state dict: {exc}".splitlines()[0]) from None

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes = self._net.detect_from_image(np.ascontiguousarray(image))
        return [
            Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(b[4]))
            for b in boxes
        ]

    def close(self) -> None:
        pass


def make_detector(name: str, min_score: float = 0.5, device: str = "cpu",
                  close_range: bool = False) -> FaceDetector:
    """The detector backend called ``name`` (``mediapipe`` or ``s3fd``).

    ``close_range``: the variant for images in which a face is large (mediapipe's
    short-range model; s3fd has one model for all sizes).
    """
    if name == "mediapipe":
        return MediaPipeDetector(min_score, short_range=close_range)
    if name == "s3fd":
        return S3FDDetector(min_score, device="cuda" if device.startswith("cuda") else "cpu")
    raise UsageError(f"unknown face detector {name!r}; choose mediapipe or s3fd")


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: shape = (N, 4), (x0, y0, x1, y1).
        b: shape = (M, 4).

    Returns:
        shape = (N, M), float64 in [0, 1].
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def nms(dets: list[Detection], threshold: float = 0.3) -> list[Detection]:
    """Non-maximum suppression: keep the best-scoring of boxes that overlap more than
    ``threshold`` IoU, or of which one lies mostly inside the other (a face seen whole and
    cut by a tile edge)."""
    if not dets:
        return []
    order = sorted(dets, key=lambda d: -d.score)
    boxes = np.array([d.box for d in order])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    for i in range(len(order)):
        if keep:
            k = np.array(keep)
            ov = iou(boxes[i : i + 1], boxes[k])[0]
            inter = ov * (areas[i] + areas[k]) / (1 + ov)
            contained = inter / np.maximum(np.minimum(areas[i], areas[k]), 1e-9)
            if (ov > threshold).any() or (contained > 0.6).any():
                continue
        keep.append(i)
    return [order[i] for i in keep]
