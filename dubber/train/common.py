"""What every trainer shares: the step loop, checkpoints, resume, the metrics CSV, AMP.

A trainer (one module per model) subclasses :class:`Trainer`: it builds its networks and
optimizers, draws a batch from the corpus with the step's own random generator, and
returns its losses; :func:`run_training` does the rest:

- step ``s`` draws its batch from ``torch.Generator().manual_seed(seed, s)`` so a resumed
  run sees exactly the batches an uninterrupted run would have seen;
- every ``checkpoint_every`` steps (and at the end, and on Ctrl-C) the networks, the
  optimizer state and the loop position are written to ``RUN/checkpoint.safetensors``
  with a JSON sidecar ``RUN/checkpoint.json`` (no pickle anywhere); ``--resume`` reads them;
- every epoch (``val_every`` steps) the trainer validates; train and val rows go to
  ``RUN/metrics.csv``;
- on CUDA the forward passes run under autocast (fp16 with a gradient scaler, or bf16);
- at the end the trained network is written to the weights folder as safetensors and its
  manifest entry (sha256, dims, trained_on, figures) is filled in.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dubber.config import Config
from dubber.errors import InputError, UsageError
from dubber.train.corpus import Corpus, Segment, atomic_write

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"
BEST = "best.safetensors"  # keep_best: the published network at its best validation
BEST_META = "best.json"
METRICS = "metrics.csv"
FLUSH_EVERY = 10  # steps between rewrites of metrics.csv (so a long run can be watched)


@dataclass(frozen=True)
class LoopConfig:
    """The loop settings every trainer has (each trainer's config extends these)."""

    steps: int = 1000  # optimisation steps in all (a resumed run continues up to this)
    batch_size: int = 8  # samples per step
    lr: float = 2e-4  # Adam learning rate
    checkpoint_every: int = 100  # steps between checkpoints
    val_every: int = 0  # steps per "epoch" (validation); 0 = one pass over the train frames
    max_minutes: float = 0.0  # stop early after this much wall time (0 = no limit)
    seed: int = 0  # seeds the networks' initialisation and every step's batch
    precision: str = "fp16"  # fp16: autocast + grad scaler on CUDA, fp32 on the CPU;
    # bf16: autocast on CUDA and CPU; fp32: none
    keep_best: bool = False  # publish the network of the best validation (the trainer's
    # ``best_figure``) instead of the last: early stopping for a small corpus that overfits


def override(hp: Any, values: dict[str, Any]) -> Any:
    """``hp`` with ``values`` (strings from ``--set k=v`` are converted to the field type).

    Raises:
        UsageError: unknown field or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(hp)}
    changes = {}
    for k, v in values.items():
        if v is None:
            continue
        k = k.replace("-", "_")
        if k not in fields:
            raise UsageError(
                f"unknown training setting {k!r} for {type(hp).__name__}; "
                f"known: {', '.join(sorted(fields))}"
            )
        cur = getattr(hp, k)
        if isinstance(v, str) and not isinstance(cur, str):
            try:
                v = (v.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(v)
            except ValueError:
                raise UsageError(
                    f"training setting {k} must be {type(cur).__name__}, got {v!r}"
                ) from None
        changes[k] = v
    return dataclasses.replace(hp, **changes)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random generator of one step (independent of how the run was interrupted)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


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


class FrameIndex:
    """Flat frame numbering over a list of segments, with T-frame windows.

    Attributes:
        offsets: shape = (n_segments + 1,), int64: first flat index of each segment.
    """

    def __init__(self, segments: list[Segment]):
        self.segments = segments
        self.offsets = np.cumsum([0] + [len(s) for s in segments])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, flat: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.offsets, flat, side="right") - 1)
        return s, int(flat - self.offsets[s])

    def crops(self, flat: np.ndarray, masked: bool = False) -> np.ndarray:
        out = []
        for f in flat.tolist():
            s, j = self.locate(f)
            seg = self.segments[s]
            out.append((seg.masked if masked else seg.crops)[j])
        return np.stack(out)

    def windows(self, frames: int) -> np.ndarray:
        """All (segment, start) pairs of ``frames`` consecutive frames, shape = (W, 2)."""
        pairs = [
            (s, j) for s, seg in enumerate(self.segments) for j in range(0, len(seg) - frames + 1)
        ]
        if not pairs:
            raise InputError(
                f"no segment has {frames} frames: the corpus is too short for a "
                f"{frames}-frame window"
            )
        return np.asarray(pairs, np.int64)


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


# -- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, trainer: Trainer, step: int, extra: dict[str, Any]) -> None:
    """Networks + optimizer state as safetensors, the loop position as JSON; atomic."""
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in trainer.modules().items():
        for k, v in mod.state_dict().items():
            tensors[f"model/{name}/{k}"] = v.detach().cpu().contiguous()
    optim_meta = {}
    for name, opt in trainer.optimizers().items():
        sd = opt.state_dict()
        keys = {}
        for idx, st in sd["state"].items():
            keys[str(idx)] = {}
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim/{name}/{idx}/{k}"] = v.detach().cpu().contiguous()
                    keys[str(idx)][k] = None
                else:
                    keys[str(idx)][k] = v
        optim_meta[name] = {"param_groups": sd["param_groups"], "state": keys}
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {
        "step": step,
        "kind": trainer.kind,
        "hp": dataclasses.asdict(trainer.hp),
        "optim": optim_meta,
        "scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else {},
        **extra,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CHECKPOINT, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(run_dir / CHECKPOINT_META, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))


def load_checkpoint(run_dir: Path, trainer: Trainer) -> dict[str, Any]:
    """Restore networks and optimizers from ``run_dir``; returns the JSON sidecar.

    Raises:
        InputError: no checkpoint, another model's, or a corrupt one.
    """
    meta_path, path = run_dir / CHECKPOINT_META, run_dir / CHECKPOINT
    if not meta_path.is_file() or not path.is_file():
        raise InputError(f"no checkpoint in {run_dir} to resume from; drop --resume to start")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(path))
    except (ValueError, OSError, SafetensorError) as exc:
        raise InputError(
            f"the checkpoint in {run_dir} is corrupt ({type(exc).__name__}); "
            f"delete it to start over"
        ) from None
    if meta.get("kind") != trainer.kind:
        raise InputError(
            f"the checkpoint in {run_dir} is a {meta.get('kind')} run, not {trainer.kind}"
        )
    for name, mod in trainer.modules().items():
        prefix = f"model/{name}/"
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            mod.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(
                f"the checkpoint in {run_dir} does not fit this preset's "
                f"{name}: {str(exc).splitlines()[0]}"
            ) from None
    for name, opt in trainer.optimizers().items():
        om = meta["optim"][name]
        state = {}
        for idx, keys in om["state"].items():
            state[int(idx)] = {
                k: (tensors[f"optim/{name}/{idx}/{k}"] if v is None else v) for k, v in keys.items()
            }
        opt.load_state_dict({"state": state, "param_groups": om["param_groups"]})
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    if meta.get("scaler") and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(meta["scaler"])
    return meta


# -- metrics -----------------------------------------------------------------------------------
class MetricsCSV:
    """``RUN/metrics.csv``: one row per logged train step and per validation.

    Columns: step, epoch, split, seconds, then the loss/figure names in first-seen order.
    On resume, rows after the checkpoint's step are dropped (they will be redone).
    """

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.columns = ["step", "epoch", "split", "seconds"]
        for r in self.rows:
            for k in r:
                if k not in self.columns:
                    self.columns.append(k)
        self._flush()

    def add(
        self, step: int, epoch: int, split: str, seconds: float, values: dict[str, float]
    ) -> None:
        row = {"step": step, "epoch": epoch, "split": split, "seconds": round(seconds, 2)}
        row.update({k: f"{v:.6g}" for k, v in values.items()})
        for k in row:
            if k not in self.columns:
                self.columns.append(k)
        self.rows.append(row)

    def _flush(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.columns)
                w.writeheader()
                w.writerows(self.rows)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, write)

    def flush(self) -> None:
        self._flush()


# -- the loop ----------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`run_training` did."""

    steps: int  # the step count reached
    first_loss: float  # the first logged step's total loss in this invocation (in the
    # whole run when a resumed run had no step left to do)
    last_loss: float  # mean total loss of the last logged steps
    figures: dict[str, float]  # the last validation
    stopped_early: bool  # max_minutes ran out before ``steps``
    run_dir: Path
    best_step: int | None = None  # keep_best: the step whose network ``figures`` describe


def run_training(
    trainer: Trainer,
    run_dir: Path,
    resume: bool = False,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``trainer`` up to ``hp.steps``, checkpointing in ``run_dir``.

    Args:
        trainer: the model's trainer.
        run_dir: checkpoints and metrics.csv.
        resume: continue from ``run_dir``'s checkpoint.
        progress: called after every step with (step, total steps, losses).

    Raises:
        InputError: ``resume`` without a checkpoint; UsageError: a checkpoint exists but
            ``resume`` was not asked for.
    """
    hp = trainer.hp
    start = 0
    if resume:
        meta = load_checkpoint(run_dir, trainer)
        start = int(meta["step"])
        log.info("resumed %s at step %d", run_dir, start)
    elif (run_dir / CHECKPOINT_META).is_file():
        raise UsageError(
            f"{run_dir} already has a checkpoint: add --resume to continue it, or "
            f"choose another --run-dir (or delete it) to start over"
        )
    best = BestKeeper(trainer, run_dir, resume)
    epoch_steps = hp.val_every or max(1, math.ceil(trainer.train_frames() / hp.batch_size))
    metrics = MetricsCSV(run_dir / METRICS, start if resume else None)
    t0 = time.monotonic()
    deadline = t0 + hp.max_minutes * 60 if hp.max_minutes > 0 else math.inf
    totals: list[float] = []
    figures: dict[str, float] = {}
    step = start
    stopped = False
    for mod in trainer.modules().values():
        mod.train()
    try:
        while step < hp.steps:
            losses = trainer.train_step(step, step_generator(hp.seed, step))
            trainer.end_step()
            step += 1
            totals.append(losses["loss"])
            metrics.add(step, (step - 1) // epoch_steps, "train", time.monotonic() - t0, losses)
            if progress:
                progress(step, hp.steps, losses)
            if step % epoch_steps == 0 and step < hp.steps:
                figures = _validate(trainer, metrics, step, epoch_steps, t0)
                best.offer(step, figures)
            if step % FLUSH_EVERY == 0:
                metrics.flush()
            if step % hp.checkpoint_every == 0 and step < hp.steps:
                metrics.flush()
                save_checkpoint(run_dir, trainer, step, {"figures": figures})
            if time.monotonic() > deadline and step < hp.steps:
                log.warning(
                    "max_minutes (%.1f) reached at step %d of %d: stopping here",
                    hp.max_minutes,
                    step,
                    hp.steps,
                )
                stopped = True
                break
    except KeyboardInterrupt:
        if step > start:
            metrics.flush()
            save_checkpoint(run_dir, trainer, step, {"figures": figures})
            log.warning(
                "interrupted: checkpoint at step %d in %s (continue with --resume)", step, run_dir
            )
        raise
    if step > start or not figures:
        figures = _validate(trainer, metrics, step, epoch_steps, t0)
        best.offer(step, figures)
    metrics.flush()
    save_checkpoint(run_dir, trainer, step, {"figures": figures})
    best_step = best.restore()
    if best_step is not None:
        figures = best.figures
    if not totals:  # a resumed run with no step left: the losses its earlier runs logged
        totals = [float(r["loss"]) for r in metrics.rows
                  if r.get("split") == "train" and r.get("loss") not in (None, "")]
    tail = totals[-max(1, min(10, len(totals) // 4)) :] if totals else [math.nan]
    return TrainResult(step, totals[0] if totals else math.nan, float(np.mean(tail)), figures,
                       stopped, run_dir, best_step)


class BestKeeper:
    """``keep_best``: keeps the published network of the best validation in ``RUN/best.*``
    and puts it back into the trainer at the end. Survives ``--resume``."""

    def __init__(self, trainer: Trainer, run_dir: Path, resume: bool):
        self.trainer, self.run_dir = trainer, run_dir
        self.on = bool(getattr(trainer.hp, "keep_best", False)) and bool(trainer.best_figure[0])
        self.step: int | None = None
        self.figures: dict[str, float] = {}
        meta = run_dir / BEST_META
        if self.on and resume and meta.is_file():
            data = json.loads(meta.read_text())
            self.step, self.figures = int(data["step"]), data["figures"]
        elif self.on and not resume:
            for name in (BEST, BEST_META):
                (run_dir / name).unlink(missing_ok=True)

    def _better(self, figures: dict[str, float]) -> bool:
        name, mode = self.trainer.best_figure
        value = figures.get(name)
        if value is None or not math.isfinite(value):
            return False
        if self.step is None:
            return True
        old = self.figures[name]
        return value < old if mode == "min" else value > old

    def offer(self, step: int, figures: dict[str, float]) -> None:
        if not self.on or not self._better(figures):
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.trainer.model.state_dict().items()}
        atomic_write(self.run_dir / BEST, lambda tmp: save_file(state, str(tmp)))
        self.step, self.figures = step, dict(figures)
        atomic_write(self.run_dir / BEST_META, lambda tmp: Path(tmp).write_text(
            json.dumps({"step": step, "figures": self.figures}, indent=1)))
        name = self.trainer.best_figure[0]
        log.info("step %d: best %s so far (%.4g), kept", step, name, figures[name])

    def restore(self) -> int | None:
        """Load the best network back into the trainer; its step (None when off or none)."""
        if not self.on or self.step is None:
            return None
        state = load_file(str(self.run_dir / BEST))
        self.trainer.model.load_state_dict(state)
        log.info("publishing the network of step %d (best %s)", self.step, self.trainer.best_figure[0])
        return self.step


def _validate(
    trainer: Trainer, metrics: MetricsCSV, step: int, epoch_steps: int, t0: float
) -> dict[str, float]:
    mods = trainer.modules()
    modes = {k: m.training for k, m in mods.items()}
    for m in mods.values():
        m.eval()
    try:
        with torch.no_grad():
            figures = trainer.validate()
    finally:
        for k, m in mods.items():
            m.train(modes[k])
    metrics.add(step, max(0, step - 1) // epoch_steps, "val", time.monotonic() - t0, figures)
    log.info("step %d validation: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
    return figures


def batches(n: int, size: int) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))


def adam(params, lr: float, faster: dict[float, list] | None = None) -> torch.optim.Optimizer:
    """Adam with the betas the VQGAN/GAN papers use for stability (0.5, 0.9).

    ``faster``: {scale: parameters} learn at ``scale * lr`` (they must also be in
    ``params``)."""
    special = {id(p) for ps in (faster or {}).values() for p in ps}
    groups = [{"params": [p for p in params if p.requires_grad and id(p) not in special]}]
    for k, ps in (faster or {}).items():
        groups.append({"params": [p for p in ps if p.requires_grad], "lr": k * lr})
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, betas=(0.5, 0.9))
