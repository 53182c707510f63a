"""Corpus crops as model input, and the figure that compares images."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_images(crops: np.ndarray, resolution: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 crops (B, S, S, 3) -> float RGB in [-1, 1], shape = (B, 3, R, R).

    Resized (bilinear, antialiased) when the corpus size S differs from the model's R;
    ``flip``: bool (B,), mirror those images left-right (augmentation).
    """
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-1] != resolution:
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
        )
    if flip is not None and bool(flip.any()):
        x[flip] = x[flip].flip(-1)
    return x


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image of two batches in [-1, 1], dB, shape = (B,)."""
    mse = ((a.float() - b.float()) / 2.0).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))
