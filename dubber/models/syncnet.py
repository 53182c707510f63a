"""Lip-sync expert in Face-VQGAN code space (DESIGN step 5).

Two towers, SyncNet-style: a video tower over T consecutive frames' Face-VQGAN embeddings
(stacked on the channel axis; optionally only the code rows from ``rows_from`` down, and
optionally centred on their mean over the window, ``center_frames``) and a speech tower over 1 s of mel. Both end in a ReLU, so
their cosine similarity lies in [0, 1] and is read directly as the in-sync probability
(trained with BCE on in-sync / shifted pairs, as in Wav2Lip's expert).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dubber.models.blocks import ConvBNReLU, SpeechEncoder, conv_stage
from dubber.models.dims import SyncNetDims

EPS = 1e-7


class SyncExpert(nn.Module):
    """``(embeddings, mel) -> (video vector, speech vector)``, both ReLU'd, shape (B, D)."""

    def __init__(self, dims: SyncNetDims):
        super().__init__()
        self.dims = dims
        levels = dims.grid.bit_length() - 1  # 16 -> 4 halvings to 1x1
        if 1 << levels != dims.grid or len(dims.video_channels) != levels + 1:
            raise ValueError(
                f"grid must be a power of two and video_channels have log2(grid)+1 = "
                f"{levels + 1} entries, got grid {dims.grid}, {len(dims.video_channels)} entries"
            )
        if not 0 <= dims.rows_from < dims.grid:
            raise ValueError(f"rows_from must be in [0, {dims.grid}), got {dims.rows_from}")
        vc = dims.video_channels
        video: list[nn.Module] = [ConvBNReLU(dims.frames * dims.embed_dim, vc[0], kernel=1)]
        for cin, cout in zip(vc[:-1], vc[1:]):
            video.append(conv_stage(cin, cout, 2, 1))
        self.video = nn.Sequential(*video)
        self.video_out = nn.Conv2d(vc[-1], dims.out_dim, 1)
        self.speech = SpeechEncoder(tuple(dims.audio_channels), dims.out_dim)

    def forward(self, embeddings: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed both modalities.

        Args:
            embeddings: shape = (B, T, embed_dim, G, G), float: Face-VQGAN embeddings of T
                consecutive frames.
            mel: shape = (B, n_mels, mel_steps), float log-mel covering the same second.

        Returns:
            (video, speech), each shape = (B, out_dim), non-negative.
        """
        d = self.dims
        want = (d.frames, d.embed_dim, d.grid, d.grid)
        if embeddings.shape[1:] != want:
            raise ValueError(f"expected embeddings (B, {want}), got {tuple(embeddings.shape)}")
        if mel.shape[1:] != (d.n_mels, d.mel_steps):
            raise ValueError(f"expected mel (B, {d.n_mels}, {d.mel_steps}), got {tuple(mel.shape)}")
        e = embeddings[..., d.rows_from :, :]
        if d.center_frames:
            e = e - e.mean(dim=1, keepdim=True)
        v = self.video(e.flatten(1, 2))
        v = torch.relu(self.video_out(v)).mean((2, 3))  # 1x1 (a band's last column pair)
        return v, torch.relu(self.speech(mel))


def sync_probability(video: torch.Tensor, speech: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two ReLU'd vectors (B, D) read as P(in sync), shape (B,) in (0, 1]."""
    return F.cosine_similarity(video.float(), speech.float(), dim=1).clamp(EPS, 1.0)
