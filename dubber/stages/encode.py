"""Encode stage: Face-VQGAN and Pose-VQGAN embeddings of every crop (step 3)."""

from __future__ import annotations

import torch

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.models.build import Models
from dubber.models.vqgan import mask_lower_face
from dubber.stages.common import batched


def encode_faces(chunk: Chunk, models: Models, cfg: Config) -> Chunk:
    """Reads ``crops``; writes ``face_emb`` and ``pose_emb``, each (M, embed_dim, G, G) float32
    on ``models.device``: the crops through the Face-VQGAN, and the crops with the lower
    face masked (``models.pose_mask_from``) through the Pose-VQGAN."""
    images = chunk.crops.images
    bs = cfg.models.batch_size

    def enc(x: torch.Tensor) -> torch.Tensor:
        x = x.to(models.device, non_blocking=True)
        with models.autocast():
            face = models.face_vqgan.encode(x)[1]
            pose = models.pose_vqgan.encode(mask_lower_face(x, cfg.models.pose_mask_from))[1]
        return torch.stack([face, pose], dim=1)

    with torch.inference_mode():
        both = batched(enc, bs, images)
    if len(images) == 0:
        d = cfg.models.face_vqgan
        both = torch.empty(0, 2, d.embed_dim, d.grid, d.grid, device=models.device)
    chunk.face_emb, chunk.pose_emb = both[:, 0], both[:, 1]
    return chunk
