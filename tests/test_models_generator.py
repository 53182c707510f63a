"""Lip-sync generator: shapes, and that speech and reference both drive the output."""

import dataclasses

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


def test_film_generator_starts_as_the_plain_one():
    """With ``audio_film`` the speech modulates every decoder level; the maps start at zero,
    so plain weights loaded into it give the plain network's output, and once the maps move
    the speech changes the output at every level."""
    plain_dims = load_config("unittest").models.generator
    film_dims = dataclasses.replace(plain_dims, audio_film=True)
    plain = build_random("generator", plain_dims, seed=3).eval()
    film = build_random("generator", film_dims, seed=4).eval()
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("film.") for k in missing)
    d = plain_dims
    g = torch.Generator().manual_seed(0)
    pose, ref = (torch.randn(2, d.embed_dim, d.grid, d.grid, generator=g) for _ in range(2))
    mel = torch.randn(2, d.n_mels, d.mel_steps, generator=g)
    with torch.inference_mode():
        assert torch.allclose(film(pose, ref, mel), plain(pose, ref, mel), atol=1e-6)
        for lin in film.film:
            lin.weight.normal_(0, 0.1)
        assert not torch.allclose(film(pose, ref, mel), plain(pose, ref, mel), atol=1e-3)


def test_residual_generator_starts_by_copying_the_reference_and_learns_a_change():
    d = dataclasses.replace(load_config("unittest").models.generator, residual=True)
    model = build_random("generator", d, seed=5)
    g = torch.Generator().manual_seed(0)
    pose, ref, target = (torch.randn(4, d.embed_dim, d.grid, d.grid, generator=g) for _ in range(3))
    mel = torch.randn(4, d.n_mels, d.mel_steps, generator=g)
    with torch.no_grad():
        assert torch.equal(model.eval()(pose, ref, mel), ref)
    opt = torch.optim.Adam(model.train().parameters(), 1e-2)
    first = None
    for _ in range(5):
        loss = (model(pose, ref, mel) - target).abs().mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first


def test_aperture_cue_draws_the_opening_it_is_given():
    """With ``aperture_cue`` the generator predicts a mouth opening from the speech alone,
    draws that one when not told, and draws the one it is told otherwise (training passes the
    true one); a generator without the cue refuses an aperture instead of ignoring it."""
    d = dataclasses.replace(load_config("unittest").models.generator, aperture_cue=True)
    model = build_random("generator", d, seed=5).eval()
    g = torch.Generator().manual_seed(0)
    pose, ref = (torch.randn(3, d.embed_dim, d.grid, d.grid, generator=g) for _ in range(2))
    mel = torch.randn(3, d.n_mels, d.mel_steps, generator=g)
    with torch.inference_mode():
        said = model.aperture(mel)
        assert said.shape == (3,)
        assert torch.allclose(model(pose, ref, mel), model(pose, ref, mel, said))
        shut, wide = model(pose, ref, mel, torch.full((3,), -2.0)), model(pose, ref, mel, torch.full((3,), 2.0))
        assert not torch.allclose(shut, wide)
    plain = build_random("generator", load_config("unittest").models.generator, seed=5)
    with pytest.raises(ValueError, match="no aperture cue"):
        plain(pose, ref, mel, torch.zeros(3))
    with pytest.raises(ValueError, match="no aperture cue"):
        plain.aperture(mel)


def test_cue_only_generator_hears_the_speech_only_through_the_opening():
    """``cue_only``: told an opening, the drawn face is the same whatever the speech; left to
    the speech, it follows the opening predicted from it."""
    d = dataclasses.replace(load_config("unittest").models.generator, aperture_cue=True,
                            cue_only=True)
    model = build_random("generator", d, seed=6).eval()
    g = torch.Generator().manual_seed(0)
    pose, ref = (torch.randn(2, d.embed_dim, d.grid, d.grid, generator=g) for _ in range(2))
    mel, mel2 = (torch.randn(2, d.n_mels, d.mel_steps, generator=g) for _ in range(2))
    told = torch.tensor([-1.0, 1.5])
    with torch.inference_mode():
        assert torch.equal(model(pose, ref, mel, told), model(pose, ref, mel2, told))
        assert not torch.allclose(model(pose, ref, mel), model(pose, ref, mel2))
    with pytest.raises(ValueError, match="cue_only needs aperture_cue"):
        build_random("generator", dataclasses.replace(d, aperture_cue=False), seed=6)


def test_the_dub_opens_the_mouth_by_the_gain_within_the_trained_range():
    from dubber.stages.generate import opening_from

    said = torch.tensor([-2.0, 0.0, 0.5, 2.0])
    assert torch.equal(opening_from(said, 2.0), torch.tensor([-3.0, 0.0, 1.0, 3.0]))
    assert torch.equal(opening_from(said, 1.0), said)
