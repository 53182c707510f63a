"""The generator's mouth-opening cue in training: lip apertures of the corpus crops."""

import numpy as np

from dubber.models.generator import APERTURE_CLIP
from dubber.train.apertures import corpus_apertures, standardise


def test_standardise_fills_what_the_mesh_missed_and_centres_on_the_speaker():
    raw = np.array([0.10, np.nan, 0.30, 0.10, 0.50, np.nan, 0.10, 9.0])
    z = standardise(raw)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    assert z[1] == z[0] + (z[2] - z[0]) / 2  # interpolated between its neighbours
    assert np.median(z) == 0 and z.max() == APERTURE_CLIP  # the outlier is clipped
    assert (z[[0, 3, 6]] < z[[2, 4]].min()).all()  # shut below open
    assert not standardise(np.full(5, np.nan)).any()  # no face at all: no cue


def test_corpus_apertures_follow_the_real_mouth_and_are_cached(tiny_corpus):
    """The face mesh on the stored crops of a real talking clip: the opening varies with the
    speech (so it can teach), one value per crop, and the second call reads the cache."""
    from dubber.train.corpus import Corpus

    corpus = Corpus(tiny_corpus)
    ap = corpus_apertures(corpus)
    segs = corpus.segments("train")
    assert set(ap) == {s.info.file for s in segs}
    for s in segs:
        a = ap[s.info.file]
        assert a.shape == (len(s),) and np.isfinite(a).all()
        assert np.percentile(a, 90) - np.percentile(a, 10) > 1.0  # a talking mouth moves
    cache = tiny_corpus / "codes" / "apertures-v1.npz"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    again = corpus_apertures(corpus)
    assert cache.stat().st_mtime_ns == stamp
    assert all(np.array_equal(again[k], ap[k]) for k in ap)
