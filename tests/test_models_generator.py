"""Lip-sync generator: shapes, and that speech and reference both drive the output."""

import pytest
import torch

from dubber.config import load_config
from dubber.models.dims import GeneratorDims
from dubber.models.registry import build_random, count_parameters


@pytest.mark.parametrize("preset", ["unittest", "fast", "4k-film"])
def test_generator_shapes(preset):
    d = load_config(preset).models.generator
    model = build_random("generator", d, seed=0)
    pose = torch.randn(1, d.embed_dim, d.grid, d.grid)
    ref = torch.randn(1, d.embed_dim, d.grid, d.grid)
    with torch.inference_mode():
        out = model(pose, ref, torch.randn(1, d.n_mels, d.mel_steps))
    assert out.shape == pose.shape and out.dtype == torch.float32


def test_paper_generator_dims():
    d = GeneratorDims()
    assert (d.mel_steps, d.face_dim + d.audio_dim, d.grid, d.embed_dim) == (20, 512, 16, 256)
    assert count_parameters("generator", d) > 1e6


def test_output_depends_on_speech_and_reference():
    d = load_config("unittest").models.generator
    model = build_random("generator", d, seed=1)
    g = torch.Generator().manual_seed(0)
    pose, ref, ref2 = (torch.randn(2, d.embed_dim, d.grid, d.grid, generator=g) for _ in range(3))
    mel, mel2 = (torch.randn(2, d.n_mels, d.mel_steps, generator=g) for _ in range(2))
    with torch.inference_mode():
        base = model(pose, ref, mel)
        assert torch.equal(base, model(pose, ref, mel))  # eval mode: deterministic
        assert not torch.allclose(base, model(pose, ref, mel2))
        assert not torch.allclose(base, model(pose, ref2, mel))


def test_bad_mel_window_is_refused():
    d = load_config("unittest").models.generator
    model = build_random("generator", d, seed=1)
    x = torch.randn(1, d.embed_dim, d.grid, d.grid)
    with pytest.raises(ValueError, match="expected mel"):
        model(x, x, torch.randn(1, d.n_mels, d.mel_steps + 1))
