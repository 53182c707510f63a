"""Lip-sync expert: shapes, non-negative outputs, probabilities, at paper and small sizes."""

import dataclasses

import pytest
import torch

from dubber.config import load_config
from dubber.models.dims import SyncNetDims
from dubber.models.registry import build_random
from dubber.models.syncnet import SyncExpert, sync_probability


@pytest.mark.parametrize("preset", ["unittest", "fast", "4k-film"])
def test_sync_expert_shapes(preset):
    d = load_config(preset).models.sync_expert
    model = build_random("sync_expert", d, seed=0)
    emb = torch.randn(1, d.frames, d.embed_dim, d.grid, d.grid)
    mel = torch.randn(1, d.n_mels, d.mel_steps)
    with torch.inference_mode():
        v, a = model(emb, mel)
    assert v.shape == a.shape == (1, d.out_dim)
    assert v.dtype == a.dtype == torch.float32
    assert (v >= 0).all() and (a >= 0).all()  # ReLU'd
    p = sync_probability(v, a)
    assert p.shape == (1,) and 0 < p.item() <= 1


def test_paper_window_is_25_frames_and_one_second():
    d = SyncNetDims()
    assert (d.frames, d.mel_steps, d.n_mels) == (25, 100, 80)


def test_probability_is_one_for_parallel_vectors_and_low_for_disjoint():
    v = torch.tensor([[1.0, 2.0, 0.0, 0.0]])
    assert sync_probability(v, 3 * v).item() == pytest.approx(1.0)
    w = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    assert sync_probability(v, w).item() < 1e-6


def test_wrong_window_length_is_refused():
    d = load_config("unittest").models.sync_expert
    model = SyncExpert(d).eval()
    with pytest.raises(ValueError, match="expected embeddings"):
        model(torch.randn(1, d.frames - 1, d.embed_dim, d.grid, d.grid), torch.randn(1, 80, 100))
    with pytest.raises(ValueError, match="expected mel"):
        model(torch.randn(1, d.frames, d.embed_dim, d.grid, d.grid), torch.randn(1, 80, 20))


def test_lower_band_expert_ignores_the_upper_face():
    """With rows_from = grid / 2 the video vector depends on the mouth rows alone."""
    d = load_config("unittest").models.sync_expert
    d = dataclasses.replace(d, rows_from=d.grid // 2)
    net = build_random("sync_expert", d, 0).eval()
    emb = torch.randn(2, d.frames, d.embed_dim, d.grid, d.grid)
    mel = torch.randn(2, d.n_mels, d.mel_steps)
    other_top, other_mouth = emb.clone(), emb.clone()
    other_top[..., : d.rows_from, :] = torch.randn_like(other_top[..., : d.rows_from, :])
    other_mouth[..., d.rows_from :, :] += 1.0
    with torch.no_grad():
        v, _ = net(emb, mel)
        assert torch.equal(net(other_top, mel)[0], v)
        assert not torch.allclose(net(other_mouth, mel)[0], v)


def test_centred_expert_sees_motion_not_the_still_face():
    """With center_frames, a face that is the same in every frame of the window (an identity
    or lighting offset) does not change the video vector; motion does."""
    d = dataclasses.replace(load_config("unittest").models.sync_expert, center_frames=True)
    net = build_random("sync_expert", d, 0).eval()
    emb = torch.randn(2, d.frames, d.embed_dim, d.grid, d.grid)
    mel = torch.randn(2, d.n_mels, d.mel_steps)
    still = emb + torch.randn(2, 1, d.embed_dim, d.grid, d.grid)  # same offset in every frame
    moved = emb.clone()
    moved[:, d.frames // 2] += 1.0
    with torch.no_grad():
        v, _ = net(emb, mel)
        assert torch.allclose(net(still, mel)[0], v, atol=1e-4)
        assert not torch.allclose(net(moved, mel)[0], v, atol=1e-4)
