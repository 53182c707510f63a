"""What ``dub weights list|verify|describe`` print.

The CLI calls these plain functions and prints their strings; they raise
:class:`~dubber.errors.DubberError` subclasses for the CLI to turn into one-line errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dubber.config import load_config
from dubber.errors import WeightsError
from dubber.models.dims import dims_from_mapping
from dubber.models.registry import (KINDS, count_parameters, manifest_path, read_manifest,
                                    read_weights, resolve_weights_dir, sha256_file, train_hint)

__all__ = ["list_weights", "verify_weights", "VerifyReport", "describe_preset"]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [header] + rows)


def _human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def list_weights(weights_dir: str | os.PathLike | None = None) -> str:
    """A table of the manifest's weights: name, model, file state, sha256, training data.

    Args:
        weights_dir: ``--weights DIR``; None falls back to ``$DUBBER_WEIGHTS``, then the
            repository's ``weights/``.
    """
    folder = resolve_weights_dir(weights_dir)
    rows = []
    for e in read_manifest(folder).values():
        path = folder / e.file
        state = f"{path.stat().st_size / 2**20:.1f} MiB" if path.is_file() else "missing"
        rows.append([e.name, KINDS[e.model].title, e.file, state, (e.sha256 or "-")[:12],
                     e.trained_on or "-"])
    head = f"weights folder {folder} (manifest {manifest_path(folder)})"
    return head + "\n" + _table(["NAME", "MODEL", "FILE", "SIZE", "SHA256", "TRAINED ON"], rows)


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify_weights`."""

    ok: bool  # every present file matches its sha256 and dims (and, if strict, none missing)
    text: str  # one line per weight, for the terminal


def verify_weights(weights_dir: str | os.PathLike | None = None, names: list[str] | None = None,
                   strict: bool = False) -> VerifyReport:
    """Check each weight file against the manifest: sha256, safetensors format, kind, dims.

    Args:
        weights_dir: as in :func:`list_weights`.
        names: only these manifest names (default all).
        strict: a missing file is a failure too (default: reported, not failed).

    Raises:
        WeightsError: ``names`` has a name the manifest lacks.
    """
    folder = resolve_weights_dir(weights_dir)
    entries = read_manifest(folder)
    unknown = set(names or []) - set(entries)
    if unknown:
        raise WeightsError(f"not in the manifest: {', '.join(sorted(unknown))}")
    ok, lines = True, []
    for e in entries.values():
        if names and e.name not in names:
            continue
        path = folder / e.file
        if not path.is_file():
            ok &= not strict
            lines.append(f"{e.name}: missing {path} (make it with `{train_hint(e.model)}`)")
            continue
        try:
            digest = sha256_file(path)
            if digest != e.sha256:
                raise WeightsError(f"sha256 {digest[:12]}... != manifest {(e.sha256 or 'none')[:12]}")
            kind, dims, _ = read_weights(path)
            cls = KINDS[e.model].dims_cls
            if kind != e.model or dims_from_mapping(cls, dims) != dims_from_mapping(cls, e.dims):
                raise WeightsError(f"file holds a {kind} with dims {dims}, manifest says "
                                   f"{e.model} with {e.dims}")
            lines.append(f"{e.name}: ok ({digest[:12]})")
        except (WeightsError, ValueError, TypeError) as exc:
            ok = False
            lines.append(f"{e.name}: BAD {path}: {exc}")
    return VerifyReport(ok, "\n".join(lines))


def describe_preset(preset: str) -> str:
    """Each model of ``preset`` with its weights, key dimensions and parameter count.

    Parameters are counted on the meta device, so even paper-size models cost no memory
    and no weight file is needed.
    """
    cfg = load_config(preset)
    m = cfg.models
    rows, total = [], 0
    for kind, info in KINDS.items():
        dims = getattr(m, kind, None)
        if dims is None:  # not a model of the presets (the mouth driver ships one weight)
            continue
        n = count_parameters(kind, dims)
        total += n
        note = []
        if kind == "sync_expert":
            note.append("training only")
        if kind == "gpen" and not m.gpen_enabled:
            note.append("disabled")
        weight = "random (seed)" if m.random_init else (getattr(m.weights, kind) or "-")
        rows.append([info.title, weight, _summary(kind, dims), f"{n:,}", _human(n),
                     ", ".join(note)])
    lines = [f"preset {cfg.preset}: device {cfg.runtime.device}, precision {m.precision}, "
             f"batch {m.batch_size}, reference {m.reference}",
             _table(["MODEL", "WEIGHTS", "DIMENSIONS", "PARAMETERS", "", "NOTE"], rows),
             f"total {total:,} parameters ({_human(total)})"]
    return "\n".join(lines)


def _summary(kind: str, d) -> str:
    if kind in ("face_vqgan", "pose_vqgan"):
        return (f"{d.resolution}px -> {d.grid}x{d.grid} codes, codebook {d.n_embed}x{d.embed_dim},"
                f" ch {d.ch}x{list(d.ch_mult)}")
    if kind == "sync_expert":
        return f"T={d.frames} frames, {d.mel_steps} mel steps, D={d.out_dim}"
    if kind == "generator":
        return (f"{d.grid}x{d.grid}x{d.embed_dim} in/out, mel {d.mel_steps} steps, "
                f"{d.face_dim}+{d.audio_dim}->{d.face_dim + d.audio_dim}")
    if kind == "lip_sync":
        return (f"{d.frames} frames of lips vs {d.mel_per_frame * d.frames} mel steps, "
                f"{'linear' if d.linear else f'conv {d.channels}'}, D={d.out_dim}")
    return f"{d.size}px, style {d.style_dim}, x{d.channel_multiplier}, narrow {d.narrow}"

