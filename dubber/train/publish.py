"""Put a trained network into a weights folder and fill in its manifest entry."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from dubber.errors import UsageError
from dubber.models.registry import (
    MANIFEST_NAME,
    KINDS,
    ManifestEntry,
    manifest_path,
    read_manifest,
    save_weights,
)

log = logging.getLogger(__name__)


def _header(text: str) -> str:
    """The comment lines at the top of a manifest (kept when it is rewritten)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 5)
    return value


def publish(
    model: nn.Module,
    kind: str,
    name: str,
    weights_dir: Path,
    trained_on: str,
    figures: dict[str, Any],
    dtype: str = "fp16",
) -> ManifestEntry:
    """Write ``model`` to ``weights_dir/<name>.safetensors`` (floating tensors in ``dtype``)
    and add or replace the entry ``name`` in ``weights_dir/manifest.yaml``.

    A folder without its own manifest gets a copy of the one that applies to it (the
    repository's), so entries for other weights are kept.

    Returns:
        the new entry.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown model kind {kind!r}")
    if dtype not in ("fp16", "fp32"):
        raise UsageError(f"weights dtype must be fp16 or fp32, got {dtype!r}")
    weights_dir.mkdir(parents=True, exist_ok=True)
    source = manifest_path(weights_dir)
    entries = read_manifest(weights_dir)
    old = entries.get(name)
    file = old.file if old else f"{name}.safetensors"
    out = copy.deepcopy(model).cpu().eval()
    if dtype == "fp16":
        out = out.half()
    sha = save_weights(out, kind, weights_dir / file)
    entry = ManifestEntry(
        name=name,
        model=kind,
        file=file,
        sha256=sha,
        dims=_plain(dataclasses.asdict(model.dims)),
        trained_on=trained_on,
        figures=_plain(figures),
    )
    entries[name] = entry
    text = source.read_text() if source.is_file() else ""
    data = {"weights": [_plain(dataclasses.asdict(e)) for e in entries.values()]}
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    target = weights_dir / MANIFEST_NAME
    target.write_text(_header(text) + body)
    size = (weights_dir / file).stat().st_size
    log.info(
        "published %s (%s, %.1f MB, sha256 %s...) in %s",
        name,
        kind,
        size / 1e6,
        sha[:12],
        weights_dir,
    )
    return entry


def fp16_roundtrip_ok(model: nn.Module) -> bool:
    """Whether every floating parameter survives fp16 (finite and in range)."""
    for p in model.state_dict().values():
        if torch.is_floating_point(p) and not torch.isfinite(p.half()).all():
            return False
    return True
