"""bench dubs: what it reads from a sync report, and its pairs."""

import pytest

from dubber.bench import dubs
from dubber.sync.check import SegmentResult, SyncReport


def _seg(confidence, verdict):
    return SegmentResult(0, 0, 99, 1, 0, 0.0, confidence, 1.2, 50, verdict)


def test_only_judged_shots_count_towards_the_confidence():
    r = SyncReport("out.mp4", "dub.wav", 25.0, 300,
                   (_seg(0.2, "in sync"), _seg(0.1, "out of sync"), _seg(None, "no face"),
                    _seg(0.9, "no speech")), 100, 50, "in sync")
    j = dubs.judged(r)
    assert j["confidence"] == pytest.approx(0.15)
    assert j["share"] == 0.5 and j["verdict"] == "in sync"


def test_a_pair_without_its_colon_or_a_missing_file_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        dubs.main(["--pairs", "kim_1080p30_en"])
    assert exc.value.code == 2 and "is not CLIP:DUB" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no file no_such_clip"):
        dubs.main(["--pairs", "no_such_clip:hi_news_22s"])
