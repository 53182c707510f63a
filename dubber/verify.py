"""``dub verify-watermark``: did dubber touch this video?

Every frame is decoded; faces are detected at quarter resolution as in the analysis pass
(:class:`~dubber.faces.tiles.FrameDetector`: whole frame, tiles, windows around the faces
of the previous frame), and the watermark is read in each face
(:func:`dubber.watermark.decode_face`, which searches the alignment around the detected
box, and around the previous frame's alignment of the same face). A frame carries the payload when one of its faces does; the video is a match when at
least half of the frames with a face carry it (the paper's rule).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dubber.config import Config
from dubber.errors import InputError, UsageError
from dubber.watermark import (N_BITS, N_CANDIDATES, codeword, decode_face, false_match_rate,
                              parse_payload, payload_of)

log = logging.getLogger(__name__)

MATCH_SHARE = 0.5  # the paper: a match when at least half of the face frames carry the mark


@dataclass(frozen=True)
class FaceResult:
    """One face on one frame: its detected box (full-res coded pixels), the bits that agree
    with the payload's codeword, and whether it carries the payload."""

    box: tuple[float, float, float, float]
    accuracy: float
    errors: int
    match: bool
    payload: str | None  # the payload its bits spell when their check bits hold


@dataclass(frozen=True)
class FrameResult:
    index: int
    faces: tuple[FaceResult, ...]

    @property
    def match(self) -> bool:
        return any(f.match for f in self.faces)

    @property
    def accuracy(self) -> float:
        """The best bit accuracy among the frame's faces (nan without faces)."""
        return max((f.accuracy for f in self.faces), default=float("nan"))


@dataclass(frozen=True)
class Verdict:
    """The whole video."""

    path: str
    payload: str
    frames: tuple[FrameResult, ...] = field(repr=False)
    max_bit_errors: int = 0

    @property
    def face_frames(self) -> int:
        return sum(1 for f in self.frames if f.faces)

    @property
    def matched_frames(self) -> int:
        return sum(1 for f in self.frames if f.match)

    @property
    def share(self) -> float:
        return self.matched_frames / self.face_frames if self.face_frames else 0.0

    @property
    def match(self) -> bool:
        return self.face_frames > 0 and self.share >= MATCH_SHARE

    @property
    def mean_accuracy(self) -> float:
        acc = [f.accuracy for f in self.frames if f.faces]
        return float(np.mean(acc)) if acc else float("nan")

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "payload": self.payload,
            "match": self.match,
            "frames": len(self.frames),
            "face_frames": self.face_frames,
            "matched_frames": self.matched_frames,
            "share": round(self.share, 4),
            "mean_bit_accuracy": None if np.isnan(self.mean_accuracy)
            else round(self.mean_accuracy, 4),
            "max_bit_errors": self.max_bit_errors,
            # two searches per face: around the detected box and the last frame's alignment
            "false_match_per_face": false_match_rate(self.max_bit_errors,
                                                     2 * (N_CANDIDATES + 27)),
            "per_frame": [
                {"frame": f.index, "match": f.match,
                 "faces": [{"box": [round(v, 1) for v in x.box], "bit_accuracy": x.accuracy,
                            "bit_errors": x.errors, "match": x.match, "payload": x.payload}
                           for x in f.faces]}
                for f in self.frames
            ],
        }


def verify_video(
    path: str | os.PathLike,
    cfg: Config,
    payload: str | None = None,
    progress: Callable[[int], None] | None = None,
    every: int = 1,
) -> Verdict:
    """Read the watermark in every face of every frame of ``path``.

    Args:
        path: the video to check.
        cfg: configuration (``watermark`` for the payload, strength and threshold; ``faces``
            for the detector; ``media`` for decoding).
        payload: 8 hex digits; default ``cfg.watermark.payload``.
        progress: called with the number of frames done so far, after each chunk.
        every: read every this many frames only (1: all); the verdict is over those read.

    Raises:
        InputError: not a readable video (nothing is written either way).
        UsageError: a malformed payload.
    """
    from dubber.faces.analyze import detection_scale
    from dubber.faces.detect import Detection, make_detector
    from dubber.faces.orient import box_to_coded, box_to_upright, upright
    from dubber.faces.tiles import FrameDetector
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    wcfg, fcfg = cfg.watermark, cfg.faces
    try:
        payload = f"{parse_payload(payload or wcfg.payload):08x}"
    except ValueError as exc:
        raise UsageError(f"--payload: {exc}") from None
    if every < 1:
        raise UsageError(f"--every must be at least 1, got {every}")
    code = codeword(payload)
    info = probe(Path(path))
    w, h, rot = info.width, info.height, info.rotation
    scale = detection_scale(fcfg.detect_scale, w, h)
    detector = make_detector(fcfg.detector, fcfg.min_score, cfg.runtime.device)
    close = make_detector(fcfg.detector, fcfg.min_score, cfg.runtime.device, close_range=True)
    frame_det = FrameDetector(detector, scale, fcfg.tile_size, fcfg.tile_overlap,
                              fcfg.tile_every, fcfg.roi_scale, fcfg.full_every, close)
    results: list[FrameResult] = []
    known: list[tuple[float, float, float, float]] = []
    hints: list[tuple[float, float, float, float]] = []  # last frame's aligned faces
    chunks = read_chunks(info, cfg.media.chunk_frames, scale, full=True,
                         queue_depth=cfg.media.queue_depth, threads=cfg.media.decode_threads,
                         chunk_megabytes=cfg.media.chunk_megabytes)
    try:
        for chunk in chunks:
            unit = float(1 << (chunk.frames.layout.bit_depth - 8))
            for i, idx in enumerate(chunk.frame_indices.tolist()):
                if idx % every:
                    continue
                image = chunk.analysis[i]
                frame_det.scale = image.shape[1] / w
                up = [box_to_upright(b, rot, w, h) for b in known]
                dets = frame_det.detect(upright(image, rot), up)
                if rot:
                    dets = [Detection(box_to_coded(d.box, rot, w, h), d.score) for d in dets]
                dets = [d for d in dets if d.size >= wcfg.min_face]
                known = [d.box for d in dets]
                luma = chunk.frames.planes(i)[0]
                faces, next_hints = [], []
                for d in dets:
                    r = _read_face(luma, d.box, hints, code, wcfg.strength, unit)
                    faces.append(FaceResult(tuple(float(v) for v in d.box), r.accuracy,
                                            r.errors, r.errors <= wcfg.max_bit_errors,
                                            payload_of(r.bits)))
                    next_hints.append(r.box())
                hints = next_hints
                results.append(FrameResult(idx, tuple(faces)))
            if progress is not None:
                progress(int(chunk.frame_indices[-1]) + 1)
    finally:
        chunks.close()
        for d in (detector, close):
            if hasattr(d, "close"):
                d.close()
    if not results:
        raise InputError(f"{path} has no video frames to check")
    verdict = Verdict(str(path), payload, tuple(results), wcfg.max_bit_errors)
    log.info("%s: %d of %d face frames carry the payload (%d bits each)", path,
             verdict.matched_frames, verdict.face_frames, N_BITS)
    return verdict


def _read_face(luma, box, hints, code, strength: float, unit: float):
    """The mark in the face detected at ``box``, also searched around the previous frame's
    aligned square of the same face when there is one: the detector's box jumps from frame
    to frame (tile scans, the close-range fallback), the face much less."""
    from dubber.faces.detect import iou

    reading = decode_face(luma, box, code, strength, unit)
    if hints:
        overlap = iou(np.asarray(box, np.float64)[None], np.asarray(hints, np.float64))[0]
        k = int(np.argmax(overlap))
        if overlap[k] > 0.5:
            other = decode_face(luma, hints[k], code, strength, unit)
            if other.agreement(code) > reading.agreement(code):
                reading = other
    return reading


def format_verdict(v: Verdict) -> str:
    """Per-frame lines (frame, faces, best bit accuracy, carries the payload), then the
    verdict."""
    lines = ["frame  faces  bit_accuracy  payload"]
    for f in v.frames:
        acc = "-" if not f.faces else f"{f.accuracy:.3f}"
        lines.append(f"{f.index:5d}  {len(f.faces):5d}  {acc:>12}  {'yes' if f.match else 'no'}")
    word = "MATCH" if v.match else "NO MATCH"
    lines.append(f"{word}: {v.matched_frames} of {v.face_frames} frames with a face carry "
                 f"payload {v.payload} ({100 * v.share:.1f}%; a match needs "
                 f"{100 * MATCH_SHARE:.0f}%); {len(v.frames)} frames, mean bit accuracy "
                 + ("-" if np.isnan(v.mean_accuracy) else f"{v.mean_accuracy:.3f}"))
    return "\n".join(lines)
