"""The lip aperture (or the mouth parameters) of every corpus frame, the generator's mouth
cue in training.

The face mesh runs on each stored face crop (resized to the mesh's input side) and gives
:func:`~dubber.faces.landmarks.lip_aperture`. Per segment the series is standardised
(median 0, standard deviation 1, clipped to +-3): speakers differ in how wide they open,
and the generator is told how far this speaker's mouth opens against their usual. Frames
the mesh misses take the value interpolated from their neighbours. Computed once per
corpus and kept in ``CORPUS/codes/apertures-v1.npz``. A generator with ``cue_dims`` 3 is
told the mouth track's three parameters instead (:func:`corpus_mouths`: opening, width,
rounding from :func:`~dubber.mouth.params.mouth_params`, each standardised the same way;
``CORPUS/codes/mouths-v1.npz``).
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


def _mesh_measure(crops: np.ndarray, measure, width: int) -> np.ndarray:
    """``measure(points)`` of each of consecutive face crops (N, S, S, 3) uint8 RGB of one
    face, shape = (N, width) (NaN where the mesh finds none)."""
    from dubber.faces.landmarks import MESH_INPUT, Landmarker

    mesh = Landmarker()  # one per run of frames: tracking mode follows the face through it
    out = np.full((len(crops), width), np.nan)
    region = (0, 0, MESH_INPUT, MESH_INPUT)
    try:
        for i, crop in enumerate(crops):
            big = cv2.resize(crop, (MESH_INPUT, MESH_INPUT), interpolation=cv2.INTER_CUBIC)
            pts = mesh.landmarks(big, region)
            if pts is not None:
                out[i] = measure(pts)
    finally:
        mesh.close()
    return out


def mesh_apertures(crops: np.ndarray) -> np.ndarray:
    """Raw face-mesh lip aperture of each of consecutive face crops (N, S, S, 3) uint8 RGB
    of one face, shape = (N,) (NaN where the mesh finds none)."""
    from dubber.faces.landmarks import lip_aperture

    return _mesh_measure(crops, lip_aperture, 1)[:, 0]


def mesh_mouths(crops: np.ndarray) -> np.ndarray:
    """Raw mouth parameters (opening, width, rounding) of each of consecutive face crops of
    one face, shape = (N, 3) (NaN where the mesh finds none)."""
    from dubber.mouth.params import mouth_params

    return _mesh_measure(crops, mouth_params, 3)


def corpus_apertures(corpus: Corpus) -> dict[str, np.ndarray]:
    """Segment file -> standardised aperture per frame, (N,) float32, train and val."""
    return _corpus_cue(corpus, "apertures-v1.npz", mesh_apertures, "lip apertures")


def corpus_mouths(corpus: Corpus) -> dict[str, np.ndarray]:
    """Segment file -> standardised mouth parameters per frame, (N, 3) float32."""
    return _corpus_cue(corpus, "mouths-v1.npz", mesh_mouths, "mouth parameters")


def _corpus_cue(corpus: Corpus, name: str, measure, desc: str) -> dict[str, np.ndarray]:
    path = corpus.folder / "codes" / name
    want = [s.file for s in corpus.manifest.segments]
    if path.is_file():
        with np.load(path) as z:
            got = {f: z[npz_key(f)] for f in want if npz_key(f) in z}
        if len(got) == len(want):
            return got
    segs = corpus.segments("train") + corpus.segments("val")
    out, missed, total = {}, 0, 0
    for seg in tqdm(segs, desc=desc, unit="segment", leave=False):
        raw = measure(seg.crops)
        missed += int(np.isnan(raw.reshape(len(raw), -1)[:, 0]).sum())
        total += len(raw)
        out[seg.info.file] = (standardise(raw) if raw.ndim == 1 else
                              np.stack([standardise(c) for c in raw.T], 1))
    if missed:
        log.info("the face mesh missed %d of %d corpus crops (interpolated)", missed, total)
    save_npz(path, {npz_key(f): a for f, a in out.items()})
    return out

