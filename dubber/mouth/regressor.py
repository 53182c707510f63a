"""The learnt part of the driver: speech features -> mouth parameters, a tiny network.

Inputs are standardised with the training set's mean and spread (stored with the
weights); outputs are per-speaker z-scores of ``opening, width, rounding`` (it is fitted on
targets standardised per video, so it learns how a mouth moves, not whose mouth it is),
turned into face-mesh units with the training speakers' typical mean and spread
(``out_mean``, ``out_std``). ``rest`` is the typical mouth at rest (silence), used by the
rules. With ``hidden = 0`` the network is a linear (ridge) map.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dubber.models.dims import MouthDriverDims


class MouthRegressor(nn.Module):
    """Features (N, n_features) -> mouth parameters in face-mesh units (N, n_params)."""

    def __init__(self, dims: MouthDriverDims) -> None:
        super().__init__()
        self.dims = dims
        p = dims.n_params
        self.register_buffer("in_mean", torch.zeros(dims.n_features))
        self.register_buffer("in_std", torch.ones(dims.n_features))
        self.register_buffer("out_mean", torch.zeros(p))
        self.register_buffer("out_std", torch.ones(p))
        self.register_buffer("rest", torch.zeros(p))
        if dims.hidden:
            self.net = nn.Sequential(nn.Linear(dims.n_features, dims.hidden), nn.Tanh(),
                                     nn.Linear(dims.hidden, p))
        else:
            self.net = nn.Linear(dims.n_features, p)

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        """Per-speaker z-scores, shape = (N, n_params)."""
        return self.net((x - self.in_mean) / self.in_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_mean + self.out_std * self.standardised(x)

    @torch.inference_mode()
    def predict(self, features: np.ndarray) -> np.ndarray:
        """shape = (N, n_features) float32 -> shape = (N, n_params) float32, units."""
        x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
        return self.forward(x.to(self.in_mean.dtype)).float().numpy()
