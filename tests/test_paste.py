"""Paste-back of generated faces: only the mouth region changes, the rest stays bit-exact."""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch

from dubber.chunk import Chunk
from dubber.config import load_config
from dubber.media.color import ColorSpec, rgb_to_yuv_region, yuv_region_to_rgb
from dubber.media.frames import FrameBatch, PixelLayout
from dubber.stages.crop import FaceCrops
from dubber.faces.landmarks import mouth_mask
from dubber.stages.paste import match_colour, paste_faces

SPEC = ColorSpec("bt709", False)
NO_COLOUR = load_config("unittest", {"models": {"paste_color_sigma": 0.0}})


def grey_chunk(layout: PixelLayout, n: int = 1, noise: bool = True) -> Chunk:
    """Frames of random samples around mid grey (flat mid grey with ``noise=False``)."""
    rng = np.random.default_rng(1)
    cw, ch = layout.chroma_size
    k = 1 << (layout.bit_depth - 8)
    (ylo, yhi), (clo, chi) = ((60, 200), (100, 150)) if noise else ((120, 121), (128, 129))
    y = (rng.integers(ylo, yhi, (n, layout.height, layout.width)) * k).astype(layout.dtype)
    u = (rng.integers(clo, chi, (n, ch, cw)) * k).astype(layout.dtype)
    v = (rng.integers(clo, chi, (n, ch, cw)) * k).astype(layout.dtype)
    chunk = Chunk(0, np.arange(n), np.arange(n), Fraction(1, 25), FrameBatch.from_arrays(layout, y, u, v))
    chunk.extra["color"] = SPEC
    return chunk


def lips_ellipse(cx, cy, rx, ry):
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def with_face(chunk, square, lips, colour=(1.0, -1.0, -1.0)):
    """One face on frame 0 whose generated image is a flat colour (red by default)."""
    chunk.extra["crops"] = FaceCrops(frame=np.array([0]), track_id=[0],
                                     square=np.array([square]), images=torch.zeros(1, 3, 32, 32),
                                     lips=[lips])
    chunk.extra["generated"] = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    return chunk


@pytest.mark.parametrize("alpha_value", [0.0, 1.0])
def test_alpha_zero_keeps_the_frame_and_alpha_one_writes_it(alpha_value):
    lay = PixelLayout(64, 48, 8, "420")
    plain, blended = grey_chunk(lay), grey_chunk(lay)
    before = blended.frames.stack()
    red = np.zeros((16, 16, 3), np.float32)
    red[..., 0] = 1.0
    box = (8, 8, 24, 24)
    rgb_to_yuv_region(red, plain.frames, 0, box, SPEC)
    rgb_to_yuv_region(red, blended.frames, 0, box, SPEC, np.full((16, 16), alpha_value, np.float32))
    expect = before if alpha_value == 0 else plain.frames.stack()
    for got, want in zip(blended.frames.stack(), expect):
        assert np.array_equal(got, want)


def test_half_alpha_lands_between_frame_and_colour():
    lay = PixelLayout(32, 32, 8, "444")
    chunk = grey_chunk(lay)
    chunk.frames.writable_planes(0)[0][:] = 16  # black luma
    chunk.frames.writable_planes(0)[1][:] = 128
    chunk.frames.writable_planes(0)[2][:] = 128
    white = np.ones((32, 32, 3), np.float32)
    rgb_to_yuv_region(white, chunk.frames, 0, (0, 0, 32, 32), SPEC, np.full((32, 32), 0.5, np.float32))
    assert np.all(np.abs(chunk.frames.stack()[0][0].astype(int) - 126) <= 1)  # (16 + 235) / 2


@pytest.mark.parametrize("bits, chroma", [(8, "420"), (10, "422")])
def test_mouth_paste_changes_the_lips_and_leaves_eyes_and_background(bits, chroma):
    lay = PixelLayout(320, 240, bits, chroma)
    chunk = grey_chunk(lay, noise=False)
    before = chunk.frames.stack()
    square = (100, 40, 228, 168)  # a 128 px face square
    lips = lips_ellipse(164, 140, 20, 8)  # a 40 px wide mouth in its lower part
    paste_faces(with_face(chunk, square, lips), None, NO_COLOUR)
    after = chunk.frames.stack()
    rgb = yuv_region_to_rgb(chunk.frames, 0, (0, 0, 320, 240), SPEC)
    # The lips are the generated colour (red).
    assert rgb[140, 164, 0] > 0.9 and rgb[140, 164, 1] < 0.1
    diff = np.abs(after[0][0].astype(int) - before[0][0].astype(int))
    changed = diff > 0
    ys, xs = np.nonzero(changed)
    # Nothing outside the square and nothing in its upper 40 % (eyes, forehead) changes;
    # above the lips grown by 12 px (0.3 mouth widths) and two blur radii, only the faint
    # feather edge does.
    assert ys.min() >= 40 + 0.4 * 128 and ys.max() < 168
    assert xs.min() >= 100 and xs.max() < 228
    assert diff[:132 - 12 - 13].max() < 0.05 * diff[140, 164]
    # So do the chroma planes (rows on the chroma grid).
    for plane in (1, 2):
        c = np.nonzero(after[plane][0] != before[plane][0])[0] << lay.chroma_shift[1]
        assert c.min() >= 40 + 0.4 * 128 - 2 and c.max() < 168


def test_box_paste_and_faces_without_lips_replace_the_whole_square():
    lay = PixelLayout(320, 240, 8, "420")
    cfg = load_config("unittest", {"models": {"paste": "box", "paste_color_sigma": 0.0}})
    for chunk_cfg, lips in ((cfg, lips_ellipse(164, 140, 20, 8)), (NO_COLOUR, None)):
        chunk = grey_chunk(lay)
        before = chunk.frames.stack()
        paste_faces(with_face(chunk, (100, 40, 228, 168), lips), None, chunk_cfg)
        changed = chunk.frames.stack()[0][0] != before[0][0]
        assert changed[40:168, 100:228].mean() > 0.95
        assert not changed[:40].any() and not changed[:, :100].any()


def test_unknown_paste_mode_is_refused():
    from dubber.errors import UsageError

    with pytest.raises(UsageError, match="models.paste"):
        load_config("unittest", {"models": {"paste": "feathered"}})


def test_colour_matching_removes_a_tint_and_keeps_the_mouth():
    """A generated face with a global tint and a dark open mouth: after matching, the tint
    is gone and most of the mouth's contrast is left."""
    rng = torch.Generator().manual_seed(0)
    original = torch.rand(1, 3, 128, 128, generator=rng) * 0.2 - 0.1  # a closed-mouth face
    generated = original + torch.tensor([0.3, -0.1, 0.2]).view(1, 3, 1, 1)  # tinted
    generated[:, :, 80:92, 46:82] -= 0.8  # the open mouth: 36 x 12 px, dark
    out = match_colour(generated, original, 0.12)
    skin = (slice(None), slice(None), slice(10, 40), slice(10, 118))
    assert (out - original)[skin].mean(dim=(0, 2, 3)).abs().max() < 0.03
    mouth = (out - original)[:, :, 80:92, 46:82].mean()
    assert mouth < -0.5  # of the -0.8 the model drew
    assert torch.equal(match_colour(generated, original, 0.0), generated)


def test_colour_match_leaves_the_mouth_out():
    """Neither mouth leaks into the other: the speaker's open mouth in the original does
    not come through as a dark patch, and the generated mouth keeps all its contrast."""
    rng = torch.Generator().manual_seed(2)
    skin = torch.rand(1, 3, 128, 128, generator=rng) * 0.2 - 0.1
    tint = torch.tensor([0.3, -0.1, 0.2]).view(1, 3, 1, 1)
    original = skin.clone()
    original[:, :, 80:92, 46:82] -= 0.8  # the speaker's mouth is open
    generated = skin + tint  # the dub's mouth is closed
    mouth = (slice(None), slice(None), slice(80, 92), slice(46, 82))
    exclude = mouth_mask(lips_ellipse(64, 86, 18, 6), (128, 128), 0.3)[None]
    leaked = (match_colour(generated, original, 0.12) - skin)[mouth].mean()
    out = match_colour(generated, original, 0.12, exclude)
    assert leaked < -0.1  # the plain blur carries the original opening through
    assert abs(float((out - skin)[mouth].mean())) < 0.03  # left out: skin, tint removed
    assert (out - skin)[:, :, 10:40, 10:118].mean(dim=(0, 2, 3)).abs().max() < 0.03
    generated[mouth] -= 0.8  # now the dub's mouth opens and the speaker's is closed
    out = match_colour(generated, skin, 0.12, exclude)
    assert float((out - skin)[mouth].mean()) < -0.75  # all of the -0.8 the model drew


def test_luma_only_paste_keeps_the_faces_colour():
    lay = PixelLayout(320, 240, 8, "420")
    chunk = grey_chunk(lay, noise=False)
    before = chunk.frames.stack()
    cfg = load_config("unittest", {"models": {"paste_chroma": 0.0, "paste_color_sigma": 0.0}})
    paste_faces(with_face(chunk, (100, 40, 228, 168), lips_ellipse(164, 140, 20, 8),
                          colour=(-1.0, -1.0, -1.0)), None, cfg)  # a black mouth
    after = chunk.frames.stack()
    assert after[0][0][140, 164] < before[0][0][140, 164] - 50  # the mouth is dark
    assert np.array_equal(after[1], before[1]) and np.array_equal(after[2], before[2])
