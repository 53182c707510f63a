"""`dub prepare`: a real clip becomes a corpus a trainer can read; resumable; bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from dubber.train.corpus import MEL_PAD, MEL_PER_FRAME, SAMPLES_PER_FRAME, Corpus
from dubber.train.prepare import split_videos
from tests.train_fixtures import CLIP, PRESET


def test_corpus_has_the_speaking_face_at_model_size(tiny_corpus):
    corpus = Corpus(tiny_corpus)
    m = corpus.manifest
    counts = m.counts()
    # The clip is one speaking face for 4.9 s: nearly all of its 122 frames are kept.
    assert counts["train"]["frames"] >= 100
    assert counts["val"]["frames"] == 0  # one video: nothing to hold back by video
    assert m.crop_size == 64 and m.fps == 25
    seg = corpus.segments("train")[0]
    n = len(seg)
    assert seg.crops.shape == (n, 64, 64, 3) and seg.crops.dtype == np.uint8
    # The face is in the crop: not flat, not the grey padding.
    assert seg.crops.std() > 20
    # The masked copy is the crop above the middle and mid-grey below it.
    assert np.array_equal(seg.masked[:, :32], seg.crops[:, :32])
    assert (seg.masked[:, 32:] == 128).all()
    assert seg.mel.shape == (80, MEL_PER_FRAME * n + 2 * MEL_PAD)
    with np.load(tiny_corpus / seg.info.file) as z:
        assert z["audio"].dtype == np.int16 and len(z["audio"]) == SAMPLES_PER_FRAME * n
        assert z["mel"].dtype == np.float16
        assert list(z["frames"]) == list(range(seg.info.first, seg.info.first + n))
        audio = z["audio"]
    # The speech is there: the segment is not silent.
    assert np.abs(audio).max() > 3000
    # The 1 s expert window and the 200 ms generator window exist for every frame.
    assert seg.mel_window(0, 100).shape == (80, 100)
    assert seg.mel_window(n - 1, 20).shape == (80, 20)


def test_prepare_resumes_without_redoing_finished_videos(tiny_corpus, dub):
    seg = next((tiny_corpus / "videos").glob("*/seg_0000.npz"))
    before = seg.stat().st_mtime_ns
    os.unlink(tiny_corpus / "corpus.json")  # as if it was interrupted before the end
    r = dub("prepare", CLIP, "-o", tiny_corpus, "--preset", PRESET, "--size", "64", "-q")
    assert r.code == 0, r
    assert seg.stat().st_mtime_ns == before  # the finished video was not redone
    manifest = json.loads((tiny_corpus / "corpus.json").read_text())
    assert manifest["counts"]["train"]["frames"] >= 100


def test_split_is_by_video_and_stable():
    keys = [f"v{i}-0000" for i in range(8)]
    val = split_videos(keys, 0.15)
    assert len(val) == 1 and val == split_videos(list(reversed(keys)), 0.15)
    assert split_videos(keys[:1], 0.15) == set()


@pytest.mark.parametrize(
    "args, words",
    [
        (["prepare", "missing.mp4", "-o", "{tmp}/c"], "does not exist"),
        (["train", "face-vqgan", "--corpus", "{tmp}/nothing"], "does not exist"),
        (["train", "face-vqgan", "--corpus", "{tmp}"], "is not a corpus"),
    ],
)
def test_bad_input_is_one_line_exit_2(dub, tmp_path, args, words):
    r = dub(*[a.format(tmp=tmp_path) for a in args])
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and words in r.err


def test_corrupt_segment_is_one_line_exit_2(dub, tiny_corpus, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_corpus, broken, ignore=shutil.ignore_patterns("runs", "codes"))
    seg = next((broken / "videos").glob("*/seg_0000.npz"))
    seg.write_bytes(seg.read_bytes()[:1000])
    r = dub(
        "train",
        "face-vqgan",
        "--corpus",
        broken,
        "--preset",
        PRESET,
        "--steps",
        "1",
        "--weights",
        tmp_path / "w",
    )
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and "corrupt" in r.err
