"""The analysis cache: tracks files keyed by input content and settings.

The key is a sha256 over the schema version, the dubber version and ``ANALYSIS_VERSION``
(bump it when a change to the analysis code changes its results), the analysis settings,
and the content of the video (and of a separate original-audio file): files up to 256 MiB are hashed whole; larger
ones by their size and 64 evenly spaced 1 MiB blocks (first and last included), which
catches any re-encode or edit while costing well under a second for a feature film.
Entries live in ``$DUBBER_CACHE/tracks`` (default ``~/.cache/dubber/tracks``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from dubber import __version__
from dubber.errors import InputError
from dubber.faces.tracks_file import SCHEMA, Tracks

log = logging.getLogger(__name__)

# Bumped whenever the analysis code changes what it finds for the same input and settings.
ANALYSIS_VERSION = 4  # 2: mesh points for the sync model; 3: mouth parameters and
# calibrations (the driver); 4: the sync model's speaker choice holds a shot's speaker
# (the weights the analysis runs are in the key too: dubber.faces.analyze.analysis_models)

_WHOLE = 256 << 20
_BLOCK = 1 << 20
_BLOCKS = 64


def cache_dir(override: str | Path | None = None) -> Path:
    """The folder of cached tracks files."""
    if override:
        return Path(override)
    root = os.environ.get("DUBBER_CACHE") or Path.home() / ".cache" / "dubber"
    return Path(root) / "tracks"


def content_hash(path: str | Path) -> str:
    """sha256 of a file's content (sampled past 256 MiB, see the module docstring)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with open(path, "rb") as f:
            if size <= _WHOLE:
                for block in iter(lambda: f.read(_BLOCK), b""):
                    h.update(block)
            else:
                for k in range(_BLOCKS):
                    f.seek((size - _BLOCK) * k // (_BLOCKS - 1))
                    h.update(f.read(_BLOCK))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    return h.hexdigest()


def cache_key(video: str | Path, settings: dict[str, Any], audio: str | Path | None = None) -> str:
    """The cache key of one analysis."""
    h = hashlib.sha256(f"{SCHEMA} dubber {__version__} analysis {ANALYSIS_VERSION}".encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(content_hash(video).encode())
    if audio:
        h.update(content_hash(audio).encode())
    else:
        from dubber.media.audio import picture_lead

        # The analysis hears the film's sound as it plays with the picture (before
        # 2026-12-01: from the stream's first sample); only files whose streams start
        # apart hear anything else, so only their keys change.
        lead = picture_lead(video)
        if lead:
            h.update(f"sound {lead:.6f} s ahead of the picture".encode())
    return h.hexdigest()


def load_cached(key: str, folder: str | Path | None = None) -> Tracks | None:
    """The cached analysis for ``key``, or None (also when the entry is unreadable)."""
    path = cache_dir(folder) / f"{key}.json"
    if not path.is_file():
        return None
    try:
        tracks = Tracks.load(path)
    except InputError as exc:
        log.warning("ignoring a broken cache entry: %s", exc)
        return None
    return tracks if tracks.key == key else None


def store(tracks: Tracks, folder: str | Path | None = None) -> Path | None:
    """Save ``tracks`` under its key; a cache that cannot be written is only a warning."""
    d = cache_dir(folder)
    try:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{tracks.key}.json"
        tracks.save(path)
        return path
    except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
        log.warning("could not write the analysis cache in %s: %s", d, exc)
        return None
