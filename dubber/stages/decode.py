"""Decode stage: the generated embeddings to pixels with the Face-VQGAN decoder (step 4)."""

from __future__ import annotations

import torch

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.models.build import Models
from dubber.stages.common import batched


def decode_faces(chunk: Chunk, models: Models, cfg: Config) -> Chunk:
    """Reads ``gen_emb``; writes ``generated``: (M, 3, R, R) float32 RGB in [-1, 1] on the CPU."""
    emb = chunk.gen_emb

    def dec(e: torch.Tensor) -> torch.Tensor:
        with models.autocast():
            return models.face_vqgan.decode(e).float().cpu()

    with torch.inference_mode():
        out = batched(dec, cfg.models.batch_size, emb)
    r = cfg.models.face_vqgan.resolution
    chunk.generated = out if len(emb) else torch.empty(0, 3, r, r)
    return chunk
