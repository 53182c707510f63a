"""The unit of work of the render loop: a run of consecutive frames and what stages add.

A stage is a function ``stage(chunk, models, cfg) -> chunk``. Stages add to a chunk; the
full-resolution ``frames`` are changed in place only by paste-back, and only inside the
faces it was given. Every field a stage writes is declared here; each stage's docstring
says which fields it reads and which it writes.

Data flow of the model chain (:data:`dubber.stages.model_chain.MODEL_STAGES`)::

    render loop  -> dub, color
    faces        -> faces, tracks_ended
    mouth        faces, color                 -> frames (in place), rendered; the faces it
                                                 drew leave faces
    crop         faces, color                 -> crops
    encode       crops                        -> face_emb, pose_emb
    stems        -> stems (per-character dubs)
    cues         -> cues (the driver's mouth per dubbed face, generators with cue_dims 3)
    generate     crops, face_emb, pose_emb, mel (or dub, stems), cues, tracks_ended
                                              -> mel, gen_emb
    decode       gen_emb                      -> generated
    restore      generated                    -> generated (GPEN's size)
    paste        crops, generated, color      -> frames (in place)
    watermark    faces, rendered              -> frames (in place, luma)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from dubber.media.frames import FrameBatch

if TYPE_CHECKING:  # imported for the annotations only (no cycle at run time)
    import torch

    from dubber.media.audio import AudioTrack
    from dubber.media.color import ColorSpec
    from dubber.stages.crop import FaceCrops


@dataclass
class Chunk:
    """Consecutive frames of one video.

    Attributes:
        index: chunk number, 0-based.
        frame_indices: shape = (N,), int64: 0-based frame numbers in presentation order.
        pts: shape = (N,), int64: presentation timestamps in ``time_base`` units, relative to
            the video's first frame (so the first frame of the video has pts 0).
        time_base: seconds per pts unit.
        frames: the full-resolution frames, in the input's planar YUV layout (coded
            orientation: the video's display rotation is not applied).
        analysis: shape = (N, h, w, 3), uint8 RGB, or None: the reduced-size analysis copy
            (``media.analysis_scale`` of full size), coded orientation like ``frames``.
        faces: per frame, the selected faces to re-render (filled by the faces stage).
        rendered: per frame, the faces a renderer before the model stages (the mouth bank)
            already drew; the watermark marks these as well as ``faces``.
        tracks_ended: ids of the tracks whose last frame is in this chunk or before it
            (faces stage): stages drop what they keep per track once done with it.
        dub: the dub track (render loop), from which per-frame mel windows are cut.
        stems: per-character stems (stems stage): track id -> that face's own dub, heard
            instead of ``dub`` by the generate stage.
        cues: (frame number, track id) -> shape (3,) float32: the dub's mouth for that
            face from the driver (opening, width, rounding, standardised over the track's
            dubbed frames; cue stage), told to a generator with ``cue_dims`` 3; None: the
            generator predicts its cue from the mel.
        hands: (index in the chunk, track id) -> shape (H, 21, 2): the hands before a face
            the mouth stage passes on to the model stages (:mod:`dubber.faces.hands`); the
            paste leaves their silhouettes as they are.
        color: the frames' colour matrix and range (render loop, from the probe).
        crops: the selected faces cut at the models' size (crop stage).
        mel: shape = (N, n_mels, mel_steps), float32: the mel window centred on each
            frame's presentation time (generate stage, from ``dub``; or given).
        face_emb: shape = (M, embed_dim, G, G), float32: Face-VQGAN embedding of each
            crop (encode stage).
        pose_emb: shape = (M, embed_dim, G, G), float32: Pose-VQGAN embedding of each
            crop's lower-half-masked copy (encode stage).
        gen_emb: shape = (M, embed_dim, G, G), float32: the generator's embedding, snapped
            to the codebook (generate stage).
        generated: shape = (M, 3, S, S), float32 RGB in [-1, 1] on the CPU: the new faces
            (decode stage; GPEN's restoration after the restore stage).
    """

    index: int
    frame_indices: np.ndarray
    pts: np.ndarray
    time_base: Fraction
    frames: FrameBatch
    analysis: np.ndarray | None = None
    faces: list[list[Any]] = field(default_factory=list)
    rendered: list[list[Any]] = field(default_factory=list)
    tracks_ended: list[Any] = field(default_factory=list)
    dub: AudioTrack | None = None
    stems: Mapping[int, AudioTrack] | None = None
    cues: Mapping[tuple[int, int], np.ndarray] | None = None
    hands: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    color: ColorSpec | None = None
    crops: FaceCrops | None = None
    mel: torch.Tensor | None = None
    face_emb: torch.Tensor | None = None
    pose_emb: torch.Tensor | None = None
    gen_emb: torch.Tensor | None = None
    generated: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.frame_indices)

    @property
    def times(self) -> np.ndarray:
        """Presentation times in seconds relative to the first frame, shape = (N,), float64."""
        return self.pts.astype(np.float64) * float(self.time_base)


# A stage: ``stage(chunk, models, cfg) -> chunk``.
Stage = Callable[["Chunk", Any, Any], "Chunk"]


def run_stages(chunk: Chunk, models: Any, cfg: Any, stages: Sequence[Stage] | None = None) -> Chunk:
    """Run ``stages`` in order over ``chunk``; returns the chunk (frames changed in place).

    The one stage loop: the render loop calls it per chunk (the faces stage, then the model
    chain). ``None`` runs :data:`dubber.stages.model_chain.MODEL_STAGES`.
    """
    if stages is None:
        from dubber.stages.model_chain import MODEL_STAGES

        stages = MODEL_STAGES
    for stage in stages:
        chunk = stage(chunk, models, cfg)
    return chunk
