"""The optimiser the trainers use."""

from __future__ import annotations

import torch


def adam(params, lr: float, faster: dict[float, list] | None = None) -> torch.optim.Optimizer:
    """Adam with the betas the VQGAN/GAN papers use for stability (0.5, 0.9).

    ``faster``: {scale: parameters} learn at ``scale * lr`` (they must also be in
    ``params``)."""
    special = {id(p) for ps in (faster or {}).values() for p in ps}
    groups = [{"params": [p for p in params if p.requires_grad and id(p) not in special]}]
    for k, ps in (faster or {}).items():
        groups.append({"params": [p for p in ps if p.requires_grad], "lr": k * lr})
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, betas=(0.5, 0.9))
