"""The weights registry: manifest, file checks, safetensors load/save with dimensions.

Weights live in one folder: ``--weights DIR`` > ``$DUBBER_WEIGHTS`` > the repository's
``weights/``. The folder's ``manifest.yaml`` (or, when it has none, the repository's) names
each weight: its file, sha256, model kind, architecture dimensions, what it was trained on
and its figures. Files are safetensors only; anything else (pickled ``.pt``/``.ckpt``) is
refused. Each file also carries its kind and dimensions in its safetensors metadata, so a
model is rebuilt from the file alone. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from dubber.errors import WeightsError
from dubber.models.dims import (GeneratorDims, GPENDims, LipSyncDims, MouthDriverDims,
                                SyncNetDims, VQGANDims,
                                dims_from_mapping, dims_to_json)

log = logging.getLogger(__name__)

REPO_WEIGHTS_DIR = Path(__file__).resolve().parent.parent.parent / "weights"
MANIFEST_NAME = "manifest.yaml"
WEIGHTS_ENV = "DUBBER_WEIGHTS"
FORMAT_TAG = "dubber-weights-1"  # safetensors metadata "format"


@dataclass(frozen=True)
class ModelKind:
    """One kind of network: how to build it and how to train it."""

    key: str  # field name in ModelsConfig / WeightNames, e.g. "face_vqgan"
    title: str  # human name, e.g. "Face-VQGAN"
    train_name: str  # `dub train <train_name>`
    dims_cls: type
    factory: Callable[[Any], nn.Module]


def _vqgan(d: VQGANDims) -> nn.Module:
    from dubber.models.vqgan import VQGAN

    return VQGAN(d)


def _sync(d: SyncNetDims) -> nn.Module:
    from dubber.models.syncnet import SyncExpert

    return SyncExpert(d)


def _gen(d: GeneratorDims) -> nn.Module:
    from dubber.models.generator import LipSyncGenerator

    return LipSyncGenerator(d)


def _gpen(d: GPENDims) -> nn.Module:
    from dubber.models.gpen import GPEN

    return GPEN(d)


def _lip_sync(d: LipSyncDims) -> nn.Module:
    from dubber.sync.model import LipSyncNet

    return LipSyncNet(d)


def _mouth(d: MouthDriverDims) -> nn.Module:
    from dubber.mouth.regressor import MouthRegressor

    return MouthRegressor(d)


KINDS: dict[str, ModelKind] = {
    k.key: k
    for k in (
        ModelKind("face_vqgan", "Face-VQGAN", "face-vqgan", VQGANDims, _vqgan),
        ModelKind("pose_vqgan", "Pose-VQGAN", "pose-vqgan", VQGANDims, _vqgan),
        ModelKind("sync_expert", "lip-sync expert", "sync-expert", SyncNetDims, _sync),
        ModelKind("generator", "lip-sync generator", "generator", GeneratorDims, _gen),
        ModelKind("gpen", "GPEN", "gpen", GPENDims, _gpen),
        ModelKind("lip_sync", "sync model on face-mesh lips", "sync-model", LipSyncDims,
                  _lip_sync),
        # Fitted by `python -m dubber.mouth.fit` (see weights/README.md), not `dub train`.
        ModelKind("mouth_driver", "mouth driver", "mouth-driver", MouthDriverDims, _mouth),
    )
}


@dataclass(frozen=True)
class ManifestEntry:
    """One weight in the manifest."""

    name: str  # registry name, e.g. "face-vqgan-fast"
    model: str  # a key of KINDS
    file: str  # file name inside the weights folder (*.safetensors)
    sha256: str | None  # hex digest of the file; None until it has been trained
    dims: dict[str, Any]  # architecture dimensions (the model's dims dataclass as a mapping)
    trained_on: str = ""  # what data it saw
    figures: dict[str, Any] = field(default_factory=dict)  # its measured figures


def resolve_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path:
    """The weights folder: ``weights_dir`` > ``$DUBBER_WEIGHTS`` > the repository's ``weights/``."""
    if weights_dir:
        return Path(weights_dir)
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else REPO_WEIGHTS_DIR


def manifest_path(weights_dir: Path) -> Path:
    """The folder's own manifest when it has one, else the repository's."""
    own = weights_dir / MANIFEST_NAME
    return own if own.is_file() else REPO_WEIGHTS_DIR / MANIFEST_NAME


def read_manifest(weights_dir: Path) -> dict[str, ManifestEntry]:
    """All entries of the manifest that applies to ``weights_dir``, by name."""
    path = manifest_path(weights_dir)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise WeightsError(f"no weights manifest: {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise WeightsError(f"weights manifest {path} is not valid YAML: {exc}".splitlines()[0]) from None
    entries = {}
    known = {f.name for f in dataclasses.fields(ManifestEntry)}
    for raw in data.get("weights") or []:
        bad = set(raw) - known
        if bad or "name" not in raw:
            raise WeightsError(f"weights manifest {path}: bad entry {raw.get('name', raw)!r} "
                               f"(unknown keys: {', '.join(sorted(bad)) or 'none'})")
        entry = ManifestEntry(**raw)
        if entry.model not in KINDS:
            raise WeightsError(f"weights manifest {path}: {entry.name} has unknown model {entry.model!r}")
        entries[entry.name] = entry
    return entries


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_hint(kind: str, preset: str = "") -> str:
    """The command that makes a missing weight."""
    if kind == "mouth_driver":
        return "python -m dubber.mouth.fit"
    p = f" --preset {preset}" if preset else ""
    return f"dub train {KINDS[kind].train_name} --corpus DIR{p}"


def _refuse_unsafe(path: Path) -> None:
    if path.suffix != ".safetensors":
        raise WeightsError(f"refusing {path}: only .safetensors weights are loaded "
                           f"(pickled checkpoints can run code on load)")


def read_weights(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read a dubber safetensors file.

    Returns:
        (model kind, dims mapping, state dict on the CPU).
    """
    _refuse_unsafe(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        # The safetensors parser never executes anything: a pickle or zip fails right here.
        raise WeightsError(f"refusing {path}: not a safetensors file ({exc})") from None
    if meta.get("format") != FORMAT_TAG or "model" not in meta or "dims" not in meta:
        raise WeightsError(f"{path} has no dubber metadata (format, model, dims); "
                           f"it was not written by dubber's trainer")
    return meta["model"], json.loads(meta["dims"]), state


def save_weights(model: nn.Module, kind: str, path: Path) -> str:
    """Write ``model`` as safetensors with its kind and dims; returns the file's sha256."""
    meta = {"format": FORMAT_TAG, "model": kind, "dims": dims_to_json(model.dims)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return sha256_file(path)


def count_parameters(kind: str, dims: Any) -> int:
    """Parameters of a model of ``kind`` with ``dims``, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = KINDS[kind].factory(dims)
    return sum(p.numel() for p in model.parameters())


def build_random(kind: str, dims: Any, seed: int) -> nn.Module:
    """A seeded, randomly initialised model (the unittest preset), in eval mode."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = KINDS[kind].factory(dims)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()


def load_model(kind: str, name: str, dims: Any, weights_dir: Path, preset: str = "") -> nn.Module:
    """Load the manifest entry ``name`` as a model of ``kind``, checking everything on the way.

    Raises:
        WeightsError: the entry is unknown, of another kind, or its file is missing, has the
            wrong sha256, is not safetensors, or has dims other than ``dims``.
    """
    title = KINDS[kind].title
    if not name:
        raise WeightsError(f"no {title} weights named in preset {preset or '(none)'} "
                           f"(models.weights.{kind}); make them with `{train_hint(kind, preset)}`")
    entries = read_manifest(weights_dir)
    entry = entries.get(name)
    if entry is None:
        raise WeightsError(f"weights {name!r} ({title}) are not in {manifest_path(weights_dir)}; "
                           f"make them with `{train_hint(kind, preset)}`")
    if entry.model != kind:
        raise WeightsError(f"weights {name!r} are a {KINDS[entry.model].title}, not a {title}")
    path = weights_dir / entry.file
    if not path.is_file():
        raise WeightsError(f"missing {title} weights {path}; make them with "
                           f"`{train_hint(kind, preset)}` or point --weights / {WEIGHTS_ENV} "
                           f"at a folder that has {entry.file}")
    if not entry.sha256:
        raise WeightsError(f"{path} has no sha256 in {manifest_path(weights_dir)}; "
                           f"register it (the trainer does) before use")
    _refuse_unsafe(path)
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise WeightsError(f"{path} has sha256 {digest[:12]}..., the manifest says "
                           f"{entry.sha256[:12]}...: the file is corrupt or was replaced")
    file_kind, file_dims, state = read_weights(path)
    if file_kind != kind:
        raise WeightsError(f"{path} holds a {file_kind}, not a {kind}")
    try:
        got = dims_from_mapping(KINDS[kind].dims_cls, file_dims)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path} has unreadable dims: {exc}") from None
    if got != dims:
        raise WeightsError(f"{path} was trained with {got}, but the preset asks for {dims}")
    model = KINDS[kind].factory(got)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit a {title}: {str(exc).splitlines()[0]}") from None
    log.info("loaded %s from %s", title, path)
    return model.eval()
