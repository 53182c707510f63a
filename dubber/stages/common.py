"""Small helpers shared by the model stages."""

from __future__ import annotations

import logging
from typing import Callable

import torch

from dubber.chunk import Chunk
from dubber.media.color import ColorSpec

log = logging.getLogger(__name__)


def color_spec(chunk: Chunk) -> ColorSpec:
    """The chunk's colour matrix/range: ``chunk.color`` (a :class:`ColorSpec`, set
    by the render loop from the probe), else the usual guess from the frame size."""
    spec = chunk.color
    if spec is None:
        lay = chunk.frames.layout
        spec = ColorSpec.guess(lay.width, lay.height)
        chunk.color = spec
        log.debug("no colour metadata on chunk %d; assuming %s", chunk.index, spec)
    return spec


def batched(fn: Callable[..., torch.Tensor], batch_size: int, *tensors: torch.Tensor) -> torch.Tensor:
    """``fn`` over slices of ``batch_size`` rows of ``tensors``, outputs concatenated on dim 0."""
    n = tensors[0].shape[0]
    outs = [fn(*(t[i : i + batch_size] for t in tensors)) for i in range(0, n, batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)
