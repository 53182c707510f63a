"""``keep_best``: the network of the best validation so far, kept in the run folder and
published instead of the last (early stopping for a small corpus that overfits)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from safetensors.torch import load_file, save_file

from dubber.train.corpus import atomic_write
from dubber.train.trainer import Trainer

log = logging.getLogger(__name__)


BEST = "best.safetensors"  # keep_best: the published network at its best validation
BEST_META = "best.json"


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
