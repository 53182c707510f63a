"""Checkpoints of a training run: networks, optimizer state and the loop position, as
``RUN/checkpoint.safetensors`` + ``RUN/checkpoint.json`` (no pickle anywhere); atomic."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dubber.errors import InputError
from dubber.train.corpus import atomic_write
from dubber.train.trainer import Trainer

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


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
