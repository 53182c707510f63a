"""Face-VQGAN and Pose-VQGAN: a face crop <-> a grid of codebook vectors (DESIGN step 3).

Built on taming-transformers' Encoder, Decoder and VectorQuantizer (the PyPI package
``taming-transformers==0.0.1``, installed without its dependencies; only these two modules
are imported and they need nothing but torch and numpy). Its Lightning model, config
strings and LPIPS loss are not used.

Both VQGANs share this class. The Pose-VQGAN is trained and run on crops whose lower part
is blanked by :func:`mask_lower_face`, so its codes carry head pose and the upper face but
not the mouth.
"""

from __future__ import annotations

import contextlib
import io

import torch
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.vqvae.quantize import VectorQuantizer
from torch import nn

from dubber.models.dims import VQGANDims

COMMITMENT_BETA = 0.25  # taming's default commitment cost (only used in training)


class VQGAN(nn.Module):
    """Encoder -> 1x1 conv -> nearest codebook vector -> 1x1 conv -> Decoder.

    Images are RGB, float, in [-1, 1], shape = (B, 3, R, R) with R = ``dims.resolution``.
    Embeddings are the quantized codebook vectors, shape = (B, embed_dim, G, G) with
    G = ``dims.grid``; codes are their indices, int64, shape = (B, G, G).
    """

    def __init__(self, dims: VQGANDims):
        super().__init__()
        self.dims = dims
        common = dict(
            ch=dims.ch,
            out_ch=3,
            ch_mult=tuple(dims.ch_mult),
            num_res_blocks=dims.num_res_blocks,
            attn_resolutions=tuple(dims.attn_resolutions),
            dropout=0.0,
            in_channels=3,
            resolution=dims.resolution,
            z_channels=dims.z_channels,
        )
        self.encoder = Encoder(double_z=False, **common)
        with contextlib.redirect_stdout(io.StringIO()):  # taming's Decoder prints its z shape
            self.decoder = Decoder(**common)
        self.quant_conv = nn.Conv2d(dims.z_channels, dims.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(dims.embed_dim, dims.z_channels, 1)
        self.quantize = VectorQuantizer(dims.n_embed, dims.embed_dim, beta=COMMITMENT_BETA)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode faces to codes.

        Args:
            images: shape = (B, 3, R, R), float, RGB in [-1, 1].

        Returns:
            codes: shape = (B, G, G), int64 indices into the codebook.
            embeddings: shape = (B, embed_dim, G, G), float32 codebook vectors.
        """
        r = self.dims.resolution
        if images.shape[1:] != (3, r, r):
            raise ValueError(f"expected images of shape (B, 3, {r}, {r}), got {tuple(images.shape)}")
        h = self.quant_conv(self.encoder(images))
        return self.quantize_embeddings(h)

    def quantize_embeddings(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Snap continuous embeddings (e.g. the generator's prediction) to the codebook.

        Args:
            z: shape = (B, embed_dim, G, G), any float dtype.

        Returns:
            (codes, embeddings) as in :meth:`encode`. Distances are taken in float32 even
            under autocast, so half precision never changes which code wins.
        """
        b, _, gh, gw = z.shape
        with torch.autocast(z.device.type, enabled=False):
            z_q, _, (_, _, idx) = self.quantize(z.float())
        return idx.view(b, gh, gw), z_q

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of ``codes`` (B, G, G) int64 -> (B, embed_dim, G, G) float32."""
        return self.quantize.embedding(codes).permute(0, 3, 1, 2).contiguous()

    def decode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Decode embeddings to faces.

        Args:
            embeddings: shape = (B, embed_dim, G, G), float (quantized or not).

        Returns:
            shape = (B, 3, R, R), RGB clamped to [-1, 1], in the dtype the decoder ran in.
        """
        return self.decoder(self.post_quant_conv(embeddings)).clamp(-1.0, 1.0)


def mask_lower_face(images: torch.Tensor, mask_from: float) -> torch.Tensor:
    """The Pose-VQGAN input: ``images`` with rows from ``mask_from`` * height down set to 0.

    Args:
        images: shape = (B, 3, H, W), float in [-1, 1].
        mask_from: fraction of the height where the mask starts (0.5 = lower half).

    Returns:
        a new tensor; the masked rows are 0 (mid-grey in [-1, 1]).
    """
    if not 0.0 <= mask_from <= 1.0:
        raise ValueError(f"mask_from must be in [0, 1], got {mask_from}")
    out = images.clone()
    out[:, :, int(round(mask_from * images.shape[2])) :, :] = 0.0
    return out
