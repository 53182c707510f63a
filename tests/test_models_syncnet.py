"""Lip-sync expert: shapes, non-negative outputs, probabilities, at paper and small sizes."""

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
