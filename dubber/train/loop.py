"""The training loop: steps, validation, checkpoints, resume, the metrics CSV, AMP.

A trainer (one module per model) subclasses :class:`~dubber.train.trainer.Trainer`: it builds its networks and
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

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dubber.errors import UsageError
from dubber.train.best import BestKeeper
from dubber.train.checkpoint import CHECKPOINT_META, load_checkpoint, save_checkpoint
from dubber.train.metrics import METRICS, MetricsCSV
from dubber.train.trainer import Trainer

log = logging.getLogger(__name__)


FLUSH_EVERY = 10  # steps between rewrites of metrics.csv (so a long run can be watched)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random generator of one step (independent of how the run was interrupted)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)



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
