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


def test_a_generator_told_the_mouth_tracks_three_parameters_draws_each_of_them():
    """``cue_dims`` 3: the cue is opening, width and rounding; a change in any one of them
    changes the face drawn, the speech is not heard once the cue is told, and the mel's
    read-out guesses all three where none is."""
    d = dataclasses.replace(load_config("unittest").models.generator, aperture_cue=True,
                            cue_only=True, cue_dims=3)
    model = build_random("generator", d, seed=7).eval()
    g = torch.Generator().manual_seed(1)
    pose, ref = (torch.randn(2, d.embed_dim, d.grid, d.grid, generator=g) for _ in range(2))
    mel, mel2 = (torch.randn(2, d.n_mels, d.mel_steps, generator=g) for _ in range(2))
    told = torch.tensor([[0.5, 0.0, 0.0], [-1.0, 0.5, 0.5]])
    with torch.inference_mode():
        base = model(pose, ref, mel, told)
        assert torch.equal(base, model(pose, ref, mel2, told))
        for k in range(3):
            other = told.clone()
            other[:, k] += 1.5
            assert not torch.allclose(base, model(pose, ref, mel, other)), k
        said = model.aperture(mel)
        assert said.shape == (2, 3)
        assert torch.allclose(model(pose, ref, mel), model(pose, ref, mel, said))
    with pytest.raises(ValueError, match="cue_dims"):
        build_random("generator", dataclasses.replace(d, cue_dims=2), seed=7)


def test_the_generate_stage_reads_each_faces_cue_and_leaves_the_others_to_the_mel():
    from types import SimpleNamespace

    import numpy as np

    from dubber.stages.generate import told_cues

    crops = SimpleNamespace(frame=np.array([0, 1, 1]), track_id=np.array([4, 4, 9]))
    chunk = SimpleNamespace(crops=crops, frame_indices=np.array([30, 31]),
                            cues={(30, 4): np.array([1.0, 2.0, 3.0], np.float32),
                                  (31, 4): np.array([-1.0, 0.0, 0.5], np.float32)})
    got = told_cues(chunk)
    assert got.shape == (3, 3)
    assert torch.equal(got[0], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(got[1], torch.tensor([-1.0, 0.0, 0.5]))
    assert torch.isnan(got[2]).all()  # track 9 has no cue: the mel's guess stands in
    chunk.cues = None
    assert told_cues(chunk) is None


def test_the_dub_opens_the_mouth_by_the_gain_within_the_trained_range():
    from dubber.stages.generate import opening_from

    said = torch.tensor([-2.0, 0.0, 0.5, 2.0])
    assert torch.equal(opening_from(said, 2.0), torch.tensor([-3.0, 0.0, 1.0, 3.0]))
    assert torch.equal(opening_from(said, 1.0), said)


def test_the_generators_cue_is_the_drivers_mouth_standardised_over_the_tracks_frames():
    """The cue table: per dubbed face the driver's three parameters, each standardised over
    the track's dubbed frames (as training standardises the face mesh's per segment)."""
    from types import SimpleNamespace

    import numpy as np

    from dubber.mouth.target import cue_table

    opening = np.r_[np.full(10, 0.02), np.linspace(0.05, 0.4, 20)]  # shut, then opening up
    params = np.stack([opening, 0.5 + 0.1 * opening, np.full(30, 0.3)], 1)

    class Mouths:
        def for_track(self, track, frames):
            assert len(frames) == 30
            return SimpleNamespace(params=params)

    tracks = SimpleNamespace(track=lambda tid: SimpleNamespace(id=tid))
    table = cue_table(Mouths(), tracks, {7: np.arange(100, 130)})
    assert set(table) == {(f, 7) for f in range(100, 130)}
    z = np.stack([table[(f, 7)] for f in range(100, 130)])
    assert z.dtype == np.float32 and np.abs(np.median(z[:, 0])) < 1e-6
    assert z[:, 0].std() == pytest.approx(1.0, abs=1e-3)
    assert (z[:10, 0] < z[-1, 0]).all() and np.all(np.diff(z[10:, 0]) > 0)
    assert np.allclose(z[:, 2], 0.0)  # a parameter that does not move is 0, not NaN
