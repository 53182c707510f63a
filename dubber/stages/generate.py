"""Generate stage: each face's new embedding from its own mel window (step 4)."""

from __future__ import annotations

from fractions import Fraction

import torch

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.errors import RunError
from dubber.models.build import Models
from dubber.models.generator import APERTURE_CLIP
from dubber.stages.common import batched


def frame_mel_windows(chunk: Chunk, steps: int) -> torch.Tensor:
    """(N, 80, steps) mel windows of ``dub`` centred on each frame's exact pts."""
    from dubber.media.audio import mel_windows

    times = [Fraction(int(p)) * chunk.time_base for p in chunk.pts]
    return mel_windows(chunk.dub, times, steps)


def reference_embeddings(chunk: Chunk, models: Models, cfg: Config) -> torch.Tensor:
    """Face-VQGAN embedding of each face's reference frame, (M, embed_dim, G, G).

    "self": the face's own frame. "track_first": the first frame of its track seen in this
    run (kept in ``models.references`` across chunks).
    """
    face = chunk.face_emb
    if cfg.models.reference == "self":
        return face
    crops = chunk.crops
    for m, track in enumerate(crops.track_id):
        if track not in models.references:
            models.references[track] = face[m].clone()
    return torch.stack([models.references[t] for t in crops.track_id])


def opening_from(predicted: torch.Tensor, gain: float) -> torch.Tensor:
    """The mouth opening to draw: the generator's prediction from the mel times ``gain``,
    within the range it was trained on."""
    return (predicted.float() * gain).clamp(-APERTURE_CLIP, APERTURE_CLIP)


def told_cues(chunk: Chunk) -> torch.Tensor | None:
    """Each face's mouth cue from ``chunk.cues``, (M, 3) float32 (NaN rows: none given),
    or None when the chunk has no cues at all."""
    if not chunk.cues:
        return None
    crops = chunk.crops
    rows = [chunk.cues.get((int(chunk.frame_indices[f]), int(t)))
            for f, t in zip(crops.frame, crops.track_id)]
    out = torch.full((len(rows), 3), float("nan"))
    for m, r in enumerate(rows):
        if r is not None:
            out[m] = torch.as_tensor(r, dtype=torch.float32)
    return out


def generate_faces(chunk: Chunk, models: Models, cfg: Config) -> Chunk:
    """Reads ``crops``, ``face_emb``, ``pose_emb``, ``mel`` (or ``dub``), ``cues`` and
    ``tracks_ended``; writes ``mel`` and ``gen_emb`` (M, embed_dim, G, G) float32 on ``models.device``: the
    generator's prediction for each face, snapped to the Face-VQGAN codebook.

    Needs ``mel``: shape = (N, n_mels, mel_steps), the mel window centred on each
    frame's presentation time (one row per chunk frame); when it is absent it is made from
    the render loop's ``dub`` (the dub's :class:`~dubber.media.audio.AudioTrack`). A
    generator with ``cue_dims`` 3 is told each face's mouth from ``cues`` (the driver's),
    and guesses it from the mel only for faces without one.
    """
    g = cfg.models.generator
    crops = chunk.crops
    pose = chunk.pose_emb
    if len(crops) == 0:  # no face in this chunk: no mel needed either
        chunk.gen_emb = torch.empty_like(pose)
        forget_ended_tracks(chunk, models)
        return chunk
    mel = chunk.mel
    if mel is None and chunk.dub is not None:
        mel = frame_mel_windows(chunk, g.mel_steps)
        chunk.mel = mel
    if mel is None or tuple(mel.shape) != (len(chunk), g.n_mels, g.mel_steps):
        got = None if mel is None else tuple(mel.shape)
        raise RunError(f"chunk {chunk.index}: the generate stage needs chunk.mel of shape "
                       f"({len(chunk)}, {g.n_mels}, {g.mel_steps}), got {got}")
    mels = torch.as_tensor(mel, dtype=torch.float32)[torch.from_numpy(crops.frame)]
    if chunk.stems:  # per-character stems: each face hears its own
        from dubber.stems import face_mel_windows

        own = face_mel_windows(chunk, crops.track_id, crops.frame, g.mel_steps)
        mels = mels if own is None else own.to(torch.float32)

    told = told_cues(chunk) if g.told_mouth_track else None

    def gen(p: torch.Tensor, r: torch.Tensor, a: torch.Tensor,
            c: torch.Tensor | None = None) -> torch.Tensor:
        a = a.to(models.device, non_blocking=True)
        with models.autocast():
            opening = None
            if c is not None:  # the driver's mouth; the mel's guess where there is none
                c = c.to(models.device)
                opening = torch.where(torch.isnan(c), models.generator.aperture(a).float(), c)
            elif g.aperture_cue and cfg.models.aperture_gain != 1.0:
                opening = opening_from(models.generator.aperture(a), cfg.models.aperture_gain)
            pred = models.generator(p, r, a, opening)
        return models.face_vqgan.quantize_embeddings(pred)[1]

    with torch.inference_mode():
        ref = reference_embeddings(chunk, models, cfg)
        args = (pose, ref, mels) if told is None else (pose, ref, mels, told)
        out = batched(gen, cfg.models.batch_size, *args)
    chunk.gen_emb = out
    forget_ended_tracks(chunk, models)
    return chunk


def forget_ended_tracks(chunk: Chunk, models: Models) -> None:
    """Drop the reference embeddings of the tracks listed in ``tracks_ended`` (their
    last frame has been generated), so a film's memory does not grow with its tracks."""
    for track in chunk.tracks_ended:
        models.references.pop(track, None)
