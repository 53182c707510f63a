"""Per-stage milliseconds per frame of the model stages, for one or more presets.

    python -m dubber.bench models [--presets fast 4k-film] [--frames 8] [--device cpu]

Models are built from each preset's dimensions with random weights (speed does not depend
on the values, and no trained weights exist yet), on a synthetic 8-bit 4:2:0 chunk with one
face per frame: 3840x2160 for 4k-film, 1920x1080 otherwise (``--frame-size`` overrides), the
face a quarter of the frame height (so the crop is about 760 px at 4K, as in the paper).
Prints one table per preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from fractions import Fraction

import numpy as np
import torch

from dubber.bench.report import Report, add_json_flag
from dubber.chunk import Chunk
from dubber.config import load_config
from dubber.media.frames import FrameBatch, PixelLayout
from dubber.models.build import build_models
from dubber.stages.model_chain import MODEL_STAGES


@dataclasses.dataclass
class _Face:
    box: tuple[float, float, float, float]
    track_id: int = 0


FRAME_SIZES = {"4k-film": (3840, 2160)}
DEFAULT_FRAME_SIZE = (1920, 1080)


def synthetic_chunk(n: int, size: tuple[int, int], mel_steps: int, n_mels: int,
                    seed: int = 0) -> Chunk:
    """An 8-bit 4:2:0 chunk of noise frames, one face box (height / 4) per frame, mel set."""
    rng = np.random.default_rng(seed)
    lay = PixelLayout(size[0], size[1], 8, "420")
    cw, ch = lay.chroma_size
    fb = FrameBatch.from_arrays(
        lay,
        rng.integers(16, 236, (n, lay.height, lay.width), dtype=np.uint8),
        rng.integers(16, 241, (n, ch, cw), dtype=np.uint8),
        rng.integers(16, 241, (n, ch, cw), dtype=np.uint8),
    )
    chunk = Chunk(0, np.arange(n), np.arange(n) * 1001, Fraction(1, 24000), fb)
    w, h, f = lay.width, lay.height, lay.height / 4
    chunk.faces = [[_Face((w / 2 - f / 2 + i, h / 3, w / 2 + f / 2 + i, h / 3 + f))]
                   for i in range(n)]
    chunk.mel = torch.randn(n, n_mels, mel_steps)
    return chunk


def bench_preset(preset: str, frames: int, device: str, gpen: bool | None,
                 size: tuple[int, int] | None = None) -> list[tuple[str, float]]:
    """Milliseconds per frame of each model stage (after one warm-up chunk)."""
    cfg = load_config(preset)
    models_cfg = dataclasses.replace(cfg.models, random_init=True)
    if gpen is not None:
        models_cfg = dataclasses.replace(models_cfg, gpen_enabled=gpen)
    cfg = dataclasses.replace(cfg, models=models_cfg)
    models = build_models(cfg, device=device)
    g = cfg.models.generator
    times = {s.__name__: 0.0 for s in MODEL_STAGES}
    for rep in range(2):  # the first pass warms up allocators and kernels
        chunk = synthetic_chunk(frames, size or FRAME_SIZES.get(preset, DEFAULT_FRAME_SIZE),
                                g.mel_steps, g.n_mels)
        for stage in MODEL_STAGES:
            if models.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            chunk = stage(chunk, models, cfg)
            if models.device.type == "cuda":
                torch.cuda.synchronize()
            if rep:
                times[stage.__name__] += time.perf_counter() - t0
    return [(k, 1000.0 * v / frames) for k, v in times.items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.bench models",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["fast", "4k-film"])
    ap.add_argument("--frames", type=int, default=4, help="frames per timed chunk")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpen", choices=["preset", "on", "off"], default="on",
                    help="time GPEN as the preset says, or force it on/off (default on)")
    ap.add_argument("--frame-size", metavar="WxH", help="frame size (default: per preset)")
    add_json_flag(ap)
    opts = ap.parse_args(argv)
    report = Report("models", opts.json)
    gpen = None if opts.gpen == "preset" else opts.gpen == "on"
    size = tuple(int(v) for v in opts.frame_size.split("x")) if opts.frame_size else None
    report.info("setup", f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                f"device {opts.device}, {opts.frames} frames per timed chunk, one face each, "
                f"GPEN {opts.gpen}")
    for preset in opts.presets:
        rows = bench_preset(preset, opts.frames, opts.device, gpen, size)
        total = sum(ms for _, ms in rows)
        w, h = size or FRAME_SIZES.get(preset, DEFAULT_FRAME_SIZE)
        for name, ms in rows:
            report.figure(f"{preset} {w}x{h} {name}", ms, "ms/frame")
        report.figure(f"{preset} {w}x{h} total", total, "ms/frame")
        report.figure(f"{preset} {w}x{h} speed", 1000.0 / total, "frames/s")
    report.close()
    return 0
