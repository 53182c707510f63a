"""The lip aperture of every corpus frame, the generator's mouth-opening cue in training.

The face mesh runs on each stored face crop (resized to the mesh's input side) and gives
:func:`~dubber.faces.landmarks.lip_aperture`. Per segment the series is standardised
(median 0, standard deviation 1, clipped to +-3): speakers differ in how wide they open,
and the generator is told how far this speaker's mouth opens against their usual. Frames
the mesh misses take the value interpolated from their neighbours. Computed once per
corpus and kept in ``CORPUS/codes/apertures-v1.npz``.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from tqdm import tqdm

from dubber.models.generator import APERTURE_CLIP
from dubber.train.codes import npz_key
from dubber.train.corpus import Corpus, save_npz

log = logging.getLogger(__name__)


def standardise(raw: np.ndarray) -> np.ndarray:
    """Raw apertures (NaN where unknown) -> per-series standardised float32, no NaN."""
    a = np.asarray(raw, np.float64)
    ok = np.isfinite(a)
    if ok.sum() < 2:
        return np.zeros(len(a), np.float32)
    idx = np.arange(len(a))
    a = np.interp(idx, idx[ok], a[ok])
    z = (a - np.median(a)) / max(float(a.std()), 1e-6)
    return np.clip(z, -APERTURE_CLIP, APERTURE_CLIP).astype(np.float32)


def mesh_apertures(crops: np.ndarray) -> np.ndarray:
    """Raw face-mesh lip aperture of each of consecutive face crops (N, S, S, 3) uint8 RGB
    of one face (NaN where the mesh finds none)."""
    from dubber.faces.landmarks import MESH_INPUT, Landmarker, lip_aperture

    mesh = Landmarker()  # one per run of frames: tracking mode follows the face through it
    out = np.full(len(crops), np.nan)
    region = (0, 0, MESH_INPUT, MESH_INPUT)
    try:
        for i, crop in enumerate(crops):
            big = cv2.resize(crop, (MESH_INPUT, MESH_INPUT), interpolation=cv2.INTER_CUBIC)
            pts = mesh.landmarks(big, region)
            if pts is not None:
                out[i] = lip_aperture(pts)
    finally:
        mesh.close()
    return out


def corpus_apertures(corpus: Corpus) -> dict[str, np.ndarray]:
    """Segment file -> standardised aperture per frame, (N,) float32, train and val."""
    path = corpus.folder / "codes" / "apertures-v1.npz"
    want = [s.file for s in corpus.manifest.segments]
    if path.is_file():
        with np.load(path) as z:
            got = {f: z[npz_key(f)] for f in want if npz_key(f) in z}
        if len(got) == len(want):
            return got
    segs = corpus.segments("train") + corpus.segments("val")
    out, missed, total = {}, 0, 0
    for seg in tqdm(segs, desc="lip apertures", unit="segment", leave=False):
        raw = mesh_apertures(seg.crops)
        missed += int(np.isnan(raw).sum())
        total += len(raw)
        out[seg.info.file] = standardise(raw)
    if missed:
        log.info("the face mesh missed %d of %d corpus crops (interpolated)", missed, total)
    save_npz(path, {npz_key(f): a for f, a in out.items()})
    return out

