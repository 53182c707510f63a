"""The same actor's other shots: banks pooled across shots, own shot first; and the detail
of a blend of two mouths."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from dubber.config import MouthConfig
from dubber.mouth.actors import BankPool, pool_banks
from dubber.mouth.bank import MouthBank
from dubber.mouth.choose import choose
from dubber.mouth.warp import blend_layers
from tests.helpers import SPEECH, needs_media


def _bank(tid: int, params: np.ndarray, first: int, colour=0.5, pose=0.0,
          folder=None) -> MouthBank:
    n = len(params)
    crops = None
    if folder is not None:  # 2x2 crops, filled with tid*10
        crops = folder / f"{tid}.crops"
        np.full(n * 2 * 2 * 3, tid * 10, np.uint8).tofile(crops)
    return MouthBank(track_id=tid, frames=np.arange(first, first + n, dtype=np.int64),
                     points=np.full((n, 478, 2), float(tid), np.float32),
                     params=np.asarray(params, np.float32),
                     pose=np.full((n, 4), pose, np.float32),
                     colour=np.full((n, 3), colour, np.float32), detail=np.ones(n, np.float32),
                     kept=np.ones(n, bool), boxes=np.tile([0, 0, 2, 2], (n, 1)).astype(np.int64),
                     offsets=np.arange(n, dtype=np.int64) * 12, crops=crops,
                     dtype=np.dtype(np.uint8))


def _shut(n: int) -> np.ndarray:
    p = np.zeros((n, 3), np.float32)
    p[:, 0], p[:, 1], p[:, 2] = 0.02, 0.55, 0.3
    return p


def _wide(n: int) -> np.ndarray:
    p = _shut(n)
    p[:, 0] = 0.25
    return p


def test_a_pool_reads_like_the_own_bank_and_takes_other_shots_crops_from_their_bank(tmp_path):
    own = _bank(3, _shut(10), first=100, folder=tmp_path)
    other = _bank(1, _wide(6), first=0, folder=tmp_path)
    pool = BankPool(own, [other], max_rows=4)
    # the own rows are unchanged: same row of a frame, same mesh, same parameters
    assert pool.row(105) == own.row(105) == 5 and pool.row(2) is None
    assert np.array_equal(pool.points[5], own.points[5])
    assert len(pool) == 10 + 4 and pool.foreign.sum() == 4
    assert set(pool.origin[pool.foreign]) == {1}
    # another shot's row: its parameters, mesh and crop come from that bank
    r = int(np.flatnonzero(pool.foreign)[0])
    assert pool.params[r, 0] == pytest.approx(0.25)
    assert pool.points[r][0, 0] == 1.0
    assert pool.points[[r, 0]].shape == (2, 478, 2)
    crop, _ = pool.crop(r)
    assert np.allclose(crop, 10 / 255)
    assert np.allclose(pool.crop(0)[0], 30 / 255)


def test_only_the_same_actor_is_pooled():
    a = _bank(0, _shut(20), first=0, colour=0.5)
    same = _bank(2, _wide(20), first=60, colour=0.5)
    other_tone = _bank(1, _wide(20), first=30, colour=0.5)
    other_tone.colour[:] = [0.6, 0.45, 0.4]  # another skin tone
    other_build = _bank(4, _wide(20), first=90, colour=0.5, pose=0.2)  # another face shape
    pools = pool_banks({0: a, 1: other_tone, 2: same, 4: other_build}, 0.03, 0.006, 100)
    assert isinstance(pools[0], BankPool) and set(pools[0].origin) == {0, 2}
    assert isinstance(pools[2], BankPool) and set(pools[2].origin) == {0, 2}
    assert pools[1] is other_tone and pools[4] is other_build


def test_own_shot_first_and_another_shots_mouths_when_the_own_has_none_like_it():
    own = _bank(0, _shut(30), first=200)
    other = _bank(1, np.concatenate([_shut(30), _wide(30)]), first=0)
    pool = BankPool(own, [other], max_rows=100)
    cfg = MouthConfig()
    pose, colour = np.zeros((20, 4)), np.full((20, 3), 0.5)
    # a shut target: the own shot's shut mouths, though the other shot has the same
    blends = choose(pool, _shut(20), pose, colour, cfg)
    assert not any(pool.foreign[r] for b in blends for r in b.rows)
    # an open target: only the other shot has open mouths
    blends = choose(pool, _wide(20), pose, colour, cfg)
    rows = [b.rows[int(np.argmax(b.weights))] for b in blends]
    assert all(pool.foreign[r] and pool.params[r, 0] > 0.2 for r in rows)
    # moving on across two tracks' frames is never "the next frame": the own bank's last
    # frame (229) and the other's first (0) are not neighbours, nor frame numbers that meet
    assert not any(pool.foreign[a] != pool.foreign[b] for a, b in zip(rows, rows[1:]))
    # a dearer other shot is not taken at all
    far = choose(pool, _wide(20), pose, colour, replace(cfg, other_shot=1.0, max_cost=2.0))
    assert not any(pool.foreign[r] for b in far for r in b.rows)


def test_a_blend_of_two_mouths_keeps_their_detail():
    rng = np.random.default_rng(0)
    base = np.full((64, 64, 3), 0.5, np.float32)
    a = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
    b = base + rng.normal(0, 0.05, base.shape).astype(np.float32)

    def detail(x):
        return float(cv2.Laplacian(x[..., 0], cv2.CV_32F).var())

    plain = 0.5 * a + 0.5 * b
    kept = blend_layers([a, b], [0.5, 0.5], sigma=2.0)
    assert detail(plain) < 0.6 * detail(a)  # a plain mean loses half the detail
    assert 0.85 * detail(a) < detail(kept) < 1.15 * detail(a)
    # the low frequencies are the plain mean's
    lo = cv2.GaussianBlur(kept, (0, 0), 4.0) - cv2.GaussianBlur(plain, (0, 0), 4.0)
    assert np.abs(lo).max() < 0.01
    assert blend_layers([a], [1.0], 2.0) is a


@needs_media
@pytest.mark.slow
def test_one_actor_in_two_shots_shares_a_bank_and_another_actor_between_is_left_out(tmp_path):
    from dubber.bench.media import make_three_shots
    from dubber.config import load_config
    from dubber.faces.analyze import analyze
    from dubber.media.probe import probe
    from dubber.mouth.plan import plan_run

    clip = make_three_shots(tmp_path / "three.mp4")
    cfg = load_config("fast")
    info = probe(clip)
    tracks = analyze(clip, cfg, cache_dir=tmp_path / "cache", info=info)
    by_shot = {tracks.shot_of(t.first).start: t.id for t in tracks.tracks if len(t) > 20}
    first, between, last = (by_shot[s] for s in sorted(by_shot))
    cfg = replace(cfg, mouth=replace(cfg.mouth, other_shot=0.0))
    plan, banks = plan_run(info, tracks, SPEECH / "hi_news_22s.wav", cfg)
    assert set(banks[last].origin) == {first, last}
    assert set(banks[first].origin) == {first, last}
    assert not isinstance(banks[between], BankPool)
    # with no preference for its own shot, the last shot shows the first shot's mouths too
    rows = [r for (f, t), p in plan.items() if t == last for r in p.blend.rows]
    assert 0 < np.mean([banks[last].foreign[r] for r in rows]) < 1
