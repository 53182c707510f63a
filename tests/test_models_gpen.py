"""GPEN: shapes and ranges at 256 and 512 (paper sizes) and the small presets."""

import pytest
import torch

from dubber.config import load_config
from dubber.models.dims import GPENDims
from dubber.models.gpen import GPEN, Upsample, gpen_channels, upfirdn2d
from dubber.models.registry import build_random, count_parameters

GPEN_256 = GPENDims(size=256, channel_multiplier=1, narrow=0.5)  # GPEN-BFR-256
GPEN_512 = GPENDims()  # GPEN-BFR-512


@pytest.mark.parametrize("preset", ["unittest", "fast"])
def test_small_gpen_shape_and_range(preset):
    d = load_config(preset).models.gpen
    model = build_random("gpen", d, seed=0)
    x = torch.rand(2, 3, d.size, d.size) * 2 - 1
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= -1 and y.max() <= 1
    assert torch.isfinite(y).all()


def test_gpen_256_paper_size_runs_on_one_face():
    torch.manual_seed(0)
    model = GPEN(GPEN_256).eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 256, 256)


def test_gpen_512_paper_size_shapes_on_meta_device():
    # Shapes only (a real 512 forward takes ~10 s on one CPU core; the bench times it).
    with torch.device("meta"):
        model = GPEN(GPEN_512)
        y = model(torch.empty(1, 3, 512, 512))
    assert y.shape == (1, 3, 512, 512)


def test_gpen_512_parameter_count_matches_the_released_model():
    # GPEN-BFR-512 has about 71M parameters.
    assert 70e6 < count_parameters("gpen", GPEN_512) < 72e6
    assert gpen_channels(GPEN_512)[512] == 64 and gpen_channels(GPEN_256)[256] == 32


def test_blurred_upsampling_keeps_a_flat_image_flat():
    x = torch.full((1, 2, 8, 8), 0.7)
    y = Upsample()(x)
    assert y.shape == (1, 2, 16, 16)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 0.7))
    k = torch.ones(1, 1)
    torch.testing.assert_close(upfirdn2d(x, k, down=2), x[:, :, ::2, ::2])


def test_wrong_size_is_refused():
    model = build_random("gpen", load_config("unittest").models.gpen, seed=0)
    with pytest.raises(ValueError, match="expected images"):
        model(torch.zeros(1, 3, 32, 32))


def test_sizes_that_are_not_a_power_of_two_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        GPEN(GPENDims(size=384, narrow=0.1))
