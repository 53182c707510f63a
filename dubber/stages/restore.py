"""GPEN stage: restore the generated faces (step 6, optional)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.models.build import Models
from dubber.stages.common import batched


def restore_faces(chunk: Chunk, models: Models, cfg: Config) -> Chunk:
    """Reads ``generated`` and replaces it by GPEN's restoration at GPEN's size, (M, 3, S, S)
    float32 in [-1, 1] on the CPU. Does nothing unless ``models.gpen_enabled``."""
    if not cfg.models.gpen_enabled or models.gpen is None:
        return chunk
    faces = chunk.generated
    s = cfg.models.gpen.size

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(models.device, non_blocking=True)
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        with models.autocast():
            return models.gpen(x).float().cpu()

    with torch.inference_mode():
        out = batched(run, cfg.models.batch_size, faces)
    chunk.generated = out if len(faces) else torch.empty(0, 3, s, s)
    return chunk
