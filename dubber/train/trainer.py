"""The trainer base class: the hooks each model's trainer implements (networks, optimizers,
a step, validation) and what they share (autocast, scaled backward steps)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dubber.config import Config
from dubber.train.corpus import Corpus, Segment

log = logging.getLogger(__name__)


class Trainer:
    """Base class. Subclasses set ``kind`` and implement the hooks below.

    Args:
        cfg: the preset's configuration (model dims, weight names).
        hp: the trainer's frozen hyper-parameter dataclass (a :class:`LoopConfig` subclass).
        corpus: the prepared corpus.
        device: where to train.
        weights_dir: where frozen inputs (e.g. the Face-VQGAN) are read and the result goes.
    """

    kind = ""  # a key of dubber.models.registry.KINDS
    best_figure = ("", "min")  # the validation figure keep_best follows, and "min" or "max"

    def __init__(
        self, cfg: Config, hp: Any, corpus: Corpus, device: torch.device, weights_dir: Path
    ):
        self.cfg, self.hp, self.corpus, self.device = cfg, hp, corpus, device
        self.weights_dir = weights_dir
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=device.type == "cuda" and hp.precision == "fp16"
        )

    # -- hooks -----------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """Every network whose state is checkpointed (the published one is ``model``)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, step: int, gen: torch.Generator) -> dict[str, float]:
        """One optimisation step (batch drawn with ``gen``); returns named losses."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Figures on the held-back split (fixed batches)."""
        raise NotImplementedError

    @property
    def model(self) -> nn.Module:
        """The network that is published."""
        return self.modules()["model"]

    def train_frames(self) -> int:
        """Frames in the train split (sets the epoch length)."""
        return sum(s.frames for s in self.corpus.manifest.segments if s.split == "train")

    # -- helpers for subclasses ---------------------------------------------------------------
    def val_segments(self) -> list[Segment]:
        """The val split, or (with a warning, once) the train split when there is none."""
        segs = self.corpus.segments("val")
        if not segs:
            if not getattr(self, "_warned_val", False):
                log.warning("the corpus has no val split: validating on train frames")
                self._warned_val = True
            segs = self.corpus.segments("train")
        return segs

    def autocast(self) -> contextlib.AbstractContextManager:
        """fp16 autocast on CUDA; bf16 autocast on CUDA or CPU (CPUs with AVX512-BF16 or
        AMX run it faster); fp32 otherwise."""
        if self.hp.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.device.type == "cuda" and self.hp.precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """zero_grad, (scaled) backward, step."""
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)

    def end_step(self) -> None:
        """Call once per step after all ``backward_step`` calls (updates the grad scaler)."""
        if self.scaler.is_enabled():
            self.scaler.update()
