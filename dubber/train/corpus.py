"""The training corpus: its on-disk format, its manifest, and the in-memory reader.

Layout of a corpus folder (written by :mod:`dubber.train.prepare`)::

    CORPUS/
      corpus.json                  the manifest (schema "dubber.corpus/1"): settings,
                                   videos, segments, split, counts
      videos/<stem>-<hash8>/
        done.json                  this video is finished (what makes prepare resumable)
        seg_0000.npz ...           one file per single-speaker segment
      codes/<kind>-<sha12>.npz     VQGAN codes of every frame, cached by the trainers

A segment is consecutive frames at 25 fps of one speaking face. Its ``.npz`` holds:

- ``crops``: shape = (N, S, S, 3), uint8 RGB, the square face crop resized to S
  (``crop_size``), cut exactly as the render path cuts it (``models.crop_scale``).
- ``masked``: the same with rows from ``pose_mask_from`` * S down set to mid-grey (the
  Pose-VQGAN's input; compresses to almost nothing).
- ``mel``: shape = (80, 4 * N + 2 * MEL_PAD), float16 log-mel; frame ``j``'s centre step
  is ``MEL_PAD + 4 * j`` (steps are 10 ms, frames 40 ms).
- ``audio``: shape = (640 * N,), int16, the segment's 16 kHz mono audio.
- ``frames``: shape = (N,), int32, frame numbers in the 25 fps video.
- ``boxes``: shape = (N, 4), float32, the smoothed face boxes in 25 fps coded pixels.

The split unit is the video: every segment of a video is in ``train`` or in ``val``.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dubber.errors import InputError
from dubber.files import temp_beside
from dubber.media.audio import HOP_LENGTH, MEL_STEPS_PER_SECOND, N_MELS, SAMPLE_RATE

log = logging.getLogger(__name__)

SCHEMA = "dubber.corpus/1"
MANIFEST = "corpus.json"
FPS = 25  # the corpus frame rate (the paper's 4KTF preprocessing)


def _exact_div(a: int, b: int) -> int:
    assert a % b == 0, (a, b)
    return a // b


MEL_PER_FRAME = _exact_div(MEL_STEPS_PER_SECOND, FPS)  # 4 mel steps per frame
SAMPLES_PER_FRAME = _exact_div(SAMPLE_RATE, FPS)  # 640 samples per frame
MEL_PAD = _exact_div(MEL_STEPS_PER_SECOND, 2)  # 0.5 s of mel context on each side
SEGMENT_KEYS = ("crops", "masked", "mel", "audio", "frames", "boxes")
assert HOP_LENGTH * MEL_PER_FRAME == SAMPLES_PER_FRAME


@dataclass(frozen=True)
class SegmentInfo:
    """One segment as the manifest lists it."""

    file: str  # path relative to the corpus folder
    video: str  # the video's key (folder name under videos/)
    first: int  # first frame number in the 25 fps video
    frames: int  # number of frames N
    track: int  # face track id in the video's analysis
    speaking: float  # mean speaking score (lip/speech correlation) over the segment
    split: str = "train"  # "train" or "val"


@dataclass(frozen=True)
class VideoInfo:
    """One source video as the manifest lists it."""

    key: str  # folder name under videos/: <stem>-<first 8 hex of its content hash>
    source: str  # the path it was prepared from (informative)
    seconds: float  # duration of the source
    frames: int  # frames at 25 fps
    kept_frames: int  # frames in its segments
    split: str  # "train" or "val"


@dataclass
class CorpusManifest:
    """``corpus.json``."""

    crop_size: int  # S: side of the stored crops
    crop_scale: float  # crop side / face box side (the render path's models.crop_scale)
    pose_mask_from: float  # where ``masked`` starts, as a fraction of the height
    videos: list[VideoInfo] = field(default_factory=list)
    segments: list[SegmentInfo] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the preparation's settings
    # frames of all videos kept, and dropped by reason (dubber.train.prepare.frame_accounting)
    frame_accounting: dict[str, int] = field(default_factory=dict)
    schema: str = SCHEMA
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    n_mels: int = N_MELS
    mel_pad: int = MEL_PAD

    def counts(self) -> dict[str, dict[str, float]]:
        """Per split: videos, segments, frames and seconds."""
        out = {}
        for split in ("train", "val"):
            segs = [s for s in self.segments if s.split == split]
            n = sum(s.frames for s in segs)
            out[split] = {
                "videos": len({s.video for s in segs}),
                "segments": len(segs),
                "frames": n,
                "seconds": round(n / FPS, 2),
            }
        return out

    def to_json(self) -> str:
        d = asdict(self)
        d["counts"] = self.counts()
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "CorpusManifest":
        d = json.loads(text)
        d.pop("counts", None)
        d["videos"] = [VideoInfo(**v) for v in d.get("videos", [])]
        d["segments"] = [SegmentInfo(**s) for s in d.get("segments", [])]
        return cls(**d)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed ``.npz`` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def write_segment(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one segment ``.npz`` (compressed) atomically; ``arrays`` has :data:`SEGMENT_KEYS`."""
    missing = set(SEGMENT_KEYS) - set(arrays)
    if missing:
        raise ValueError(f"segment arrays lack {sorted(missing)}")
    save_npz(path, arrays)


def write_manifest(folder: Path, manifest: CorpusManifest) -> None:
    atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(manifest.to_json()))


def read_manifest(folder: str | os.PathLike) -> CorpusManifest:
    """Read ``CORPUS/corpus.json``.

    Raises:
        InputError: the folder or its manifest is missing, unreadable or of another schema.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(
            f"corpus {folder} does not exist; make one with `dub prepare VIDEO... -o {folder}`"
        )
    if not path.is_file():
        raise InputError(
            f"{folder} is not a corpus (no {MANIFEST}); make one with "
            f"`dub prepare VIDEO... -o {folder}`"
        )
    try:
        manifest = CorpusManifest.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(
            f"{path} is corrupt ({type(exc).__name__}: {exc}); run `dub prepare` again"
        ) from None
    if manifest.schema != SCHEMA:
        raise InputError(f"{path} has schema {manifest.schema!r}, expected {SCHEMA!r}")
    return manifest


@dataclass
class Segment:
    """One segment in memory (see the module docstring for the arrays)."""

    info: SegmentInfo
    crops: np.ndarray  # (N, S, S, 3) uint8
    masked: np.ndarray  # (N, S, S, 3) uint8
    mel: np.ndarray  # (80, 4N + 2 * MEL_PAD) float32

    def __len__(self) -> int:
        return len(self.crops)

    def mel_window(self, centre_frame: float, steps: int) -> np.ndarray:
        """The ``steps`` mel steps centred on frame ``centre_frame`` (may be fractional:
        the T-frame expert window is centred between frames). Shape = (80, steps)."""
        c = MEL_PAD + int(round(centre_frame * MEL_PER_FRAME))
        a = c - steps // 2
        if a < 0 or a + steps > self.mel.shape[1]:
            raise IndexError(f"mel window {a}..{a + steps} outside 0..{self.mel.shape[1]}")
        return self.mel[:, a : a + steps]


def load_segment(folder: Path, info: SegmentInfo) -> Segment:
    """Read one segment file. Raises InputError when it is missing or corrupt."""
    path = folder / info.file
    try:
        with np.load(path, allow_pickle=False) as z:
            crops, masked, mel = z["crops"], z["masked"], z["mel"].astype(np.float32)
    except FileNotFoundError:
        raise InputError(
            f"corpus segment {path} is missing; run `dub prepare` again (it resumes)"
        ) from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(
            f"corpus segment {path} is corrupt ({type(exc).__name__}); delete "
            f"its video folder and run `dub prepare` again"
        ) from None
    n = info.frames
    if (
        crops.shape[0] != n
        or masked.shape != crops.shape
        or mel.shape != (N_MELS, MEL_PER_FRAME * n + 2 * MEL_PAD)
    ):
        raise InputError(
            f"corpus segment {path} does not match the manifest "
            f"({crops.shape[0]} frames, mel {mel.shape}; expected {n} frames)"
        )
    return Segment(info, crops, masked, mel)


class Corpus:
    """A prepared corpus, read into memory one split at a time.

    Args:
        folder: the corpus folder.

    Raises:
        InputError: missing, not a corpus, corrupt, or empty.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if not self.manifest.segments:
            raise InputError(
                f"corpus {self.folder} has no segments (no single-speaker footage "
                f"was found); prepare it from other videos"
            )
        self._cache: dict[str, list[Segment]] = {}

    @property
    def crop_size(self) -> int:
        return self.manifest.crop_size

    def segments(self, split: str) -> list[Segment]:
        """All segments of ``split`` ("train" or "val"), loaded once and kept."""
        if split not in self._cache:
            infos = [s for s in self.manifest.segments if s.split == split]
            self._cache[split] = [load_segment(self.folder, s) for s in infos]
            log.info(
                "corpus %s: %d %s segments, %d frames",
                self.folder,
                len(infos),
                split,
                sum(s.frames for s in infos),
            )
        return self._cache[split]

    def describe(self) -> str:
        """One line with the counts, e.g. for logs and manifests."""
        c = self.manifest.counts()
        return (
            f"{c['train']['frames']} train frames ({c['train']['seconds']:.0f} s, "
            f"{c['train']['videos']} videos), {c['val']['frames']} val frames "
            f"({c['val']['seconds']:.0f} s, {c['val']['videos']} videos)"
        )
