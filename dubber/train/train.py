"""``dub train MODEL``: pick the trainer, run it, publish the result."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dubber.config import Config
from dubber.errors import UsageError
from dubber.models.registry import KINDS, ManifestEntry, resolve_weights_dir
from dubber.train.hparams import override
from dubber.train.loop import run_training, TrainResult

log = logging.getLogger(__name__)

MODELS = ("face-vqgan", "pose-vqgan", "sync-expert", "generator", "gpen")
_KIND = {KINDS[k].train_name: k for k in KINDS}


def default_hp(name: str) -> Any:
    """The trainer's hyper-parameter dataclass with its defaults."""
    if name in ("face-vqgan", "pose-vqgan"):
        from dubber.train.vqgan import VQGANTrainConfig

        return VQGANTrainConfig()
    if name == "sync-expert":
        from dubber.train.syncnet import SyncTrainConfig

        return SyncTrainConfig()
    if name == "generator":
        from dubber.train.generator import GeneratorTrainConfig

        return GeneratorTrainConfig()
    if name == "gpen":
        from dubber.train.gpen import GPENTrainConfig

        return GPENTrainConfig()
    raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def make_trainer(name: str, cfg: Config, hp: Any, corpus, device, weights_dir: Path):
    kind = _KIND[name]
    if name in ("face-vqgan", "pose-vqgan"):
        from dubber.train.vqgan import VQGANTrainer

        return VQGANTrainer(cfg, hp, corpus, device, weights_dir, kind)
    if name == "sync-expert":
        from dubber.train.syncnet import SyncTrainer

        return SyncTrainer(cfg, hp, corpus, device, weights_dir)
    if name == "generator":
        from dubber.train.generator import GeneratorTrainer

        return GeneratorTrainer(cfg, hp, corpus, device, weights_dir)
    from dubber.train.gpen import GPENTrainer

    return GPENTrainer(cfg, hp, corpus, device, weights_dir)


def weight_name(name: str, cfg: Config) -> str:
    """The manifest name the preset gives this model, else ``<model>-<preset>``."""
    return getattr(cfg.models.weights, _KIND[name]) or f"{name}-{cfg.preset or 'custom'}"


@dataclass(frozen=True)
class TrainOutcome:
    result: TrainResult
    entry: ManifestEntry | None  # None when nothing was published (--no-publish)
    weights_dir: Path


def train(
    name: str,
    corpus_dir: str | os.PathLike,
    cfg: Config,
    settings: dict[str, Any],
    weights_dir: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    publish: bool = True,
    dtype: str = "fp16",
    command: str = "",
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainOutcome:
    """Train ``name`` on a corpus and publish it.

    Args:
        name: one of :data:`MODELS`.
        corpus_dir: a folder made by ``dub prepare``.
        cfg: the preset (model dims, weight names, device).
        settings: overrides of the trainer's hyper-parameters (None values ignored).
        weights_dir: frozen inputs are read from, and the result is written to, this folder
            (default: ``$DUBBER_WEIGHTS``, else the repository's ``weights/``).
        run_dir: checkpoints and metrics (default: ``CORPUS/runs/<weight name>``).
        resume: continue from the run folder's checkpoint.
        publish: write the weights and their manifest entry at the end.
        dtype: fp16 or fp32 for the published file.
        command: the command line, recorded in the manifest.
        progress: per-step callback (step, steps, losses).
    """
    import torch

    from dubber.models.build import resolve_device
    from dubber.train.corpus import Corpus
    from dubber.train.publish import publish as publish_weights

    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    hp = override(default_hp(name), settings)
    if hp.steps < 1 or hp.batch_size < 1 or hp.checkpoint_every < 1:
        raise UsageError("steps, batch size and checkpoint interval must be at least 1")
    corpus = Corpus(corpus_dir)
    device = resolve_device(cfg.runtime.device)
    wdir = resolve_weights_dir(weights_dir)
    wname = weight_name(name, cfg)
    rdir = Path(run_dir) if run_dir else Path(corpus_dir) / "runs" / wname
    torch.manual_seed(hp.seed)
    trainer = make_trainer(name, cfg, hp, corpus, device, wdir)
    log.info(
        "training %s (%s) on %s: %s; %d steps, batch %d, on %s",
        name,
        wname,
        corpus.folder,
        corpus.describe(),
        hp.steps,
        hp.batch_size,
        device,
    )
    result = run_training(trainer, rdir, resume=resume, progress=progress)
    entry = None
    if publish:
        figures = {
            k: v if isinstance(v, int) else round(float(v), 4) for k, v in result.figures.items()
        }
        figures["steps"] = result.steps
        if result.best_step is not None:
            figures["best_step"] = result.best_step  # the published network's step
        figures["train_loss"] = round(result.last_loss, 4)
        trained_on = (
            f"{corpus.describe()} of the corpus {corpus.folder.name} "
            f"(25 fps single-speaker segments made by `dub prepare`); "
            f"{result.steps} steps of batch {hp.batch_size}"
            + (f"; command: {command}" if command else "")
        )
        entry = publish_weights(
            trainer.model, trainer.kind, wname, wdir, trained_on, figures, dtype
        )
    return TrainOutcome(result, entry, wdir)
