"""The sync model: lips and speech in one embedding space (SyncNet-style, two towers).

Lip tower: ``frames`` grid frames of normalised lip and jaw points
(:mod:`dubber.sync.features`), shape (B, frames, 2 * points), read as a few fixed mouth
and jaw measures (:data:`~dubber.sync.features.MOUTH_MEASURES`: openings, width, lips,
corners, jaw), through three 1-D convs over time and two linear layers. Speech tower: the matching log-mel window, shape
(B, n_mels, mel_per_frame * frames), each window's mean subtracted (loudness and channel
gain drop out), through three 1-D convs (the first and last strided, down to one step per frame) and two
linear layers. Both give L2-normalised ``out_dim`` embeddings; the distance of a pair is
the Euclidean distance of its embeddings (0 .. 2; SyncNet's LSE-D is this distance at the
best offset). Everything is differentiable, so the distance can be a generator's loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dubber.models.dims import LipSyncDims

# Scale of the raw points (outer-eye-distance units: lips move by ~0.01-0.2) and of the
# log-mel (log10 power: speech spans ~4 decades), so both towers start near unit range.
POINT_SCALE = 10.0
MEL_SCALE = 0.5


class LipSyncNet(nn.Module):
    """Two towers and a learnt similarity temperature.

    Attributes:
        dims: the :class:`~dubber.models.dims.LipSyncDims` it was built with.
    """

    def __init__(self, dims: LipSyncDims) -> None:
        super().__init__()
        self.dims = dims
        c, h = dims.channels, dims.hidden
        from dubber.sync.features import N_MOVING, measure_matrix

        if dims.points != N_MOVING:
            raise ValueError(f"the lip tower reads {N_MOVING} points, not {dims.points}")
        self.register_buffer("measures", torch.from_numpy(measure_matrix()), persistent=False)
        n_meas = self.measures.shape[1]
        steps = dims.mel_per_frame * dims.frames
        if dims.n_mels % dims.mel_bands:
            raise ValueError(f"mel_bands ({dims.mel_bands}) must divide n_mels ({dims.n_mels})")
        bands = dims.mel_bands
        if dims.linear:
            self.lips = nn.Sequential(nn.Flatten(), nn.Dropout(dims.dropout),
                                      nn.Linear(n_meas * dims.frames, dims.out_dim))
            self.speech = nn.Sequential(nn.Flatten(), nn.Dropout(dims.dropout),
                                        nn.Linear(bands * steps, dims.out_dim))
            self.log_scale = nn.Parameter(torch.tensor(2.3))
            return
        self.lips = nn.Sequential(
            nn.Conv1d(n_meas, c, 3, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Dropout(dims.dropout), nn.Linear(c * dims.frames, h), nn.ReLU(),
            nn.Linear(h, dims.out_dim),
        )
        if dims.mel_per_frame != 4:
            raise ValueError("the speech tower reduces 4 mel steps to one frame; "
                             "mel_per_frame must be 4")
        self.speech = nn.Sequential(
            nn.Conv1d(bands, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 3, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Dropout(dims.dropout), nn.Linear(c * (steps // 4), h), nn.ReLU(),
            nn.Linear(h, dims.out_dim),
        )
        # log of the cosine-similarity scale used by the contrastive loss
        self.log_scale = nn.Parameter(torch.tensor(2.3))

    def embed_lips(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: shape = (B, frames, 2 * points) float32, feature units.

        Returns: shape = (B, out_dim), unit length."""
        m = (x @ self.measures).transpose(1, 2)  # (B, measures, frames)
        return F.normalize(self.lips(m * POINT_SCALE), dim=-1)

    def embed_speech(self, mel: torch.Tensor) -> torch.Tensor:
        """Args: mel: shape = (B, n_mels, mel_per_frame * frames) float32 log10 mel.

        Returns: shape = (B, out_dim), unit length."""
        d = self.dims
        if d.mel_bands != d.n_mels:
            mel = mel.reshape(mel.shape[0], d.mel_bands, d.n_mels // d.mel_bands, -1).mean(2)
        m = (mel - mel.mean(dim=(1, 2), keepdim=True)) * MEL_SCALE
        return F.normalize(self.speech(m), dim=-1)

    def distance(self, lips: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Sync distance of aligned pairs (small = in sync), shape = (B,), in [0, 2]."""
        return (self.embed_lips(lips) - self.embed_speech(mel)).norm(dim=-1)

    def forward(self, lips: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return self.distance(lips, mel)
