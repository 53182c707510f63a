"""Frozen VQGAN codes of every corpus frame, computed once and cached in the corpus.

The sync expert and the generator work in Face-VQGAN code space. Encoding every crop at
every step would cost more than training them, so each frame's code grid is computed once
per VQGAN weight file and kept in ``CORPUS/codes/<kind>-<sha12>.npz`` (int16, (N, G, G) per
segment); an embedding is then a codebook lookup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dubber.config import Config
from dubber.errors import WeightsError
from dubber.models.registry import KINDS, load_model, read_manifest
from dubber.train.frames import batches
from dubber.train.images import to_images
from dubber.train.corpus import Corpus, save_npz

log = logging.getLogger(__name__)


@dataclass
class FrozenCodes:
    """One frozen VQGAN's view of the corpus.

    Attributes:
        table: shape = (n_embed, embed_dim), float32: the codebook.
        codes: segment file -> shape = (N, G, G), int64 code indices of its frames.
    """

    table: torch.Tensor
    codes: dict[str, np.ndarray]

    def embed(self, codes: np.ndarray) -> torch.Tensor:
        """Codes (..., G, G) -> embeddings (..., embed_dim, G, G), float32."""
        e = self.table[torch.from_numpy(np.asarray(codes, np.int64))]
        return e.movedim(-1, -3).contiguous()


def load_frozen_vqgan(kind: str, cfg: Config, weights_dir: Path, needed_by: str):
    """(model in eval mode, its manifest sha256). Raises WeightsError naming what to train."""
    name = getattr(cfg.models.weights, kind) or f"{KINDS[kind].train_name}-{cfg.preset}"
    try:
        model = load_model(kind, name, getattr(cfg.models, kind), weights_dir, cfg.preset)
    except WeightsError as exc:
        raise WeightsError(
            f"{needed_by} needs a trained {KINDS[kind].title} first "
            f"(`dub train {KINDS[kind].train_name} --corpus CORPUS"
            f"{' --preset ' + cfg.preset if cfg.preset else ''}`): {exc}"
        ) from None
    sha = read_manifest(weights_dir)[name].sha256 or ""
    return model.eval().requires_grad_(False), sha


def corpus_codes(
    corpus: Corpus,
    kind: str,
    cfg: Config,
    weights_dir: Path,
    device: torch.device,
    needed_by: str,
    batch_size: int = 32,
) -> FrozenCodes:
    """Codes of every train and val frame under the preset's ``kind`` VQGAN (cached)."""
    model, sha = load_frozen_vqgan(kind, cfg, weights_dir, needed_by)
    table = model.quantize.embedding.weight.detach().float().cpu()
    path = corpus.folder / "codes" / f"{kind}-{sha[:12]}.npz"
    masked = kind == "pose_vqgan"
    want = [s.file for s in corpus.manifest.segments]
    if path.is_file():
        with np.load(path) as z:
            codes = {f: z[npz_key(f)].astype(np.int64) for f in want if npz_key(f) in z}
        if len(codes) == len(want):
            return FrozenCodes(table, codes)
    log.info(
        "encoding %d corpus frames with the %s (cached in %s)",
        sum(s.frames for s in corpus.manifest.segments),
        KINDS[kind].title,
        path,
    )
    model.to(device)
    codes = {}
    res = model.dims.resolution
    for split in ("train", "val"):
        for seg in corpus.segments(split):
            images = seg.masked if masked else seg.crops
            out = []
            with torch.no_grad():
                for sl in batches(len(images), batch_size):
                    x = to_images(images[sl], res).to(device)
                    out.append(model.encode(x)[0].cpu())
            codes[seg.info.file] = torch.cat(out).numpy().astype(np.int64)
    arrays = {npz_key(f): c.astype(np.int16) for f, c in codes.items()}
    save_npz(path, arrays)
    return FrozenCodes(table, codes)


def npz_key(file: str) -> str:
    """A segment file's key in a per-segment npz cache (no slashes)."""
    return file.replace("/", "__")
