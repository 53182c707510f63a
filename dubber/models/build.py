"""The inference models of one run, built from a configuration and a weights folder."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dubber.config import Config
from dubber.errors import UsageError
from dubber.models.registry import build_random, load_model, resolve_weights_dir

log = logging.getLogger(__name__)

INFERENCE_KINDS = ("face_vqgan", "pose_vqgan", "generator")  # plus gpen when enabled
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Models:
    """What the model stages use. Built by :func:`build_models`; one per run.

    Attributes:
        face_vqgan, pose_vqgan, generator: the stage-1 networks, eval mode, on ``device``.
        gpen: the stage-2 restorer, or None when ``models.gpen_enabled`` is off.
        device: where they run.
        precision: "fp32", "fp16" or "bf16" (autocast on CUDA only).
        references: per face track id, the Face-VQGAN embedding of the reference frame
            (reference policy "track_first"), shape = (embed_dim, G, G); filled by the
            generate stage and kept across chunks.
    """

    face_vqgan: nn.Module
    pose_vqgan: nn.Module
    generator: nn.Module
    gpen: nn.Module | None
    device: torch.device
    precision: str = "fp32"
    references: dict[Any, torch.Tensor] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget per-title state (the reference frames). Call between videos: track ids
        are only unique within one video."""
        self.references.clear()

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision on CUDA when the preset asks for it; a no-op otherwise."""
        if self.device.type == "cuda" and self.precision in _AUTOCAST:
            return torch.autocast("cuda", dtype=_AUTOCAST[self.precision])
        return contextlib.nullcontext()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda``/``cuda:N`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name} was asked for but no CUDA GPU is available; "
                         f"use --device cpu (or auto)")
    return dev


def build_models(cfg: Config, weights_dir: str | Path | None = None,
                 device: str | torch.device | None = None) -> Models:
    """Load (or, for ``models.random_init``, build) the inference models of ``cfg``.

    Args:
        cfg: the run's configuration; ``cfg.models`` gives dims and weight names.
        weights_dir: ``--weights DIR``; None falls back to ``$DUBBER_WEIGHTS``, then the
            repository's ``weights/``.
        device: overrides ``cfg.runtime.device``.

    Raises:
        WeightsError: a weight is missing, corrupt, unsafe or of other dims (the message
            names the file and the ``dub train`` command that makes it).
        UsageError: CUDA asked for but absent.
    """
    m = cfg.models
    kinds = INFERENCE_KINDS + (("gpen",) if m.gpen_enabled else ())
    folder = resolve_weights_dir(weights_dir)
    nets: dict[str, nn.Module] = {}
    for i, kind in enumerate(kinds):
        dims = getattr(m, kind)
        if m.random_init:
            nets[kind] = build_random(kind, dims, m.seed + i)
        else:
            nets[kind] = load_model(kind, getattr(m.weights, kind), dims, folder, cfg.preset)
    dev = device if isinstance(device, torch.device) else resolve_device(device or cfg.runtime.device)
    for net in nets.values():
        net.to(dev).eval().requires_grad_(False)
    log.info("models on %s (%s): %s", dev, m.precision, ", ".join(kinds))
    return Models(nets["face_vqgan"], nets["pose_vqgan"], nets["generator"], nets.get("gpen"),
                  dev, m.precision)
