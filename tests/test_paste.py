"""Paste-back of generated faces: only the mouth region changes, the rest stays bit-exact."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from dubber.chunk import Chunk
from dubber.config import load_config
from dubber.media.color import ColorSpec, rgb_to_yuv_region, yuv_region_to_rgb
from dubber.media.frames import FrameBatch, PixelLayout
from dubber.stages.crop import FaceCrops
from dubber.faces.mouth_region import mouth_mask
from dubber.stages.paste import match_colour, paste_faces, recolour

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
    chunk.color = SPEC
    return chunk


def lips_ellipse(cx, cy, rx, ry):
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def mouth(cx, top, width, height):
    """Outer lips in the face mesh's contour order (corner, lower lip, corner, upper lip):
    the upper lip's top at ``top``, opened ``height`` px down."""
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    upper, lower = 0.3 * width / 2, height - 0.3 * width / 2
    mid = top + upper
    return np.stack([cx + width / 2 * np.cos(a),
                     mid + np.where(np.sin(a) > 0, lower, upper) * np.sin(a)], axis=1)


def with_face(chunk, square, lips, colour=(1.0, -1.0, -1.0)):
    """One face on frame 0 whose generated image is a flat colour (red by default)."""
    chunk.crops = FaceCrops(frame=np.array([0]), track_id=[0],
                                     square=np.array([square]), images=torch.zeros(1, 3, 32, 32),
                                     lips=[lips])
    chunk.generated = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 64, 64)
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


def test_mouth_paste_covers_where_the_original_mouth_opens_while_it_is_shut():
    """The paste region is the lips swept down to ``paste_open`` mouth widths: while the
    original speaker's mouth is shut, it already covers where their lower lip goes when it
    opens, so the original opening and closing does not show at the paste's edge."""
    lay = PixelLayout(320, 240, 8, "420")
    square = (100, 40, 228, 168)
    shut, wide = mouth(164, 128, 40, 12), mouth(164, 128, 40, 26)

    def weight(lips, paste_open):
        """How much of the generated face each pixel took (0 to 1)."""
        cfg = load_config("unittest", {"models": {"paste_color_sigma": 0.0,
                                                  "paste_open": paste_open}})
        chunk = grey_chunk(lay, noise=False)
        before = chunk.frames.stack()[0][0].astype(float)
        paste_faces(with_face(chunk, square, lips), None, cfg)
        change = np.abs(chunk.frames.stack()[0][0] - before)
        return change / change[136, 164]

    lower_lip = (slice(150, 155), slice(158, 171))  # of the open mouth, below the shut one
    followed_shut, followed_wide = weight(shut, 0.0), weight(wide, 0.0)
    assert followed_shut[lower_lip].min() < 0.6  # the original's lower lip shows through
    assert (followed_wide - followed_shut).max() > 0.3  # the region grows as it opens
    stable_shut, stable_wide = weight(shut, 0.65), weight(wide, 0.65)
    assert stable_shut[lower_lip].min() > 0.9
    assert (stable_wide - stable_shut).max() < 0.05  # already covered while shut
    moved = np.abs(followed_wide - followed_shut).sum()
    assert np.abs(stable_wide - stable_shut).sum() < 0.5 * moved
    # Above the mouth nothing changes: the upper lip is where the region starts.
    assert np.abs(stable_shut[:128] - followed_shut[:128]).max() < 0.05
    assert stable_shut[:100].max() < 0.05


def test_paste_open_is_validated():
    from dubber.errors import UsageError

    with pytest.raises(UsageError, match="paste_open"):
        load_config("unittest", {"models": {"paste_open": -0.1}})


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


def test_recolour_draws_the_lips_where_the_new_mouth_is_not_where_the_old_one_was():
    """paste_chroma 0: the speaker's open red lips do not show through a closed generated
    mouth; the generated mouth takes their tint, the skin takes the skin's colour (not the
    model's blue cast), and the brightness is the model's."""
    skin, red = torch.tensor([0.5, 0.1, -0.1]), torch.tensor([0.3, -0.5, -0.4])
    original = skin.view(1, 3, 1, 1).repeat(1, 1, 128, 128)
    original[:, :, 78:100, 44:84] = red.view(1, 3, 1, 1)  # open lips ...
    original[:, :, 84:94, 50:78] = -0.8  # ... round a dark gap
    generated = (skin + torch.tensor([-0.2, 0.0, 0.3])).view(1, 3, 1, 1).repeat(1, 1, 128, 128)
    generated[:, :, 78:84, 44:84] = -0.3  # a closed, darker mouth along the upper lip
    region = mouth_mask(mouth(64, 78, 40, 26), (128, 128), 0.3)[None]
    lips = np.zeros((1, 128, 128), bool)
    lips[0, 78:100, 44:84] = True
    out = recolour(generated, original, region, lips, chroma=0.0)

    def chroma(img, ys, xs):  # (B - Y, R - Y) averaged over a patch, RGB in [0, 1]
        rgb = ((img[0, :, ys, xs] + 1) / 2).mean(dim=(1, 2))
        y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        return torch.stack([rgb[2] - y, rgb[0] - y])

    skin_c = chroma(original, slice(10, 30), slice(10, 30))
    lip_c = chroma(original, slice(78, 84), slice(44, 84))
    old_lower_lip = (slice(95, 100), slice(50, 78))  # red in the original, skin in the new
    assert torch.allclose(chroma(out, *old_lower_lip), skin_c, atol=0.03)
    new_mouth = (slice(79, 83), slice(50, 78))
    assert torch.allclose(chroma(out, *new_mouth), lip_c, atol=0.06)
    assert torch.dist(chroma(out, *new_mouth), skin_c) > 0.8 * torch.dist(lip_c, skin_c)
    gen_luma = ((generated + 1) / 2 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    out_luma = ((out + 1) / 2 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert (out_luma - gen_luma)[0, 60:110, 30:100].abs().max() < 1e-4
    assert torch.equal(recolour(generated, original, region, lips, chroma=1.0), generated)


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


def test_a_hand_passed_on_by_the_mouth_stage_stays_in_front_of_the_pasted_mouth():
    """The bank renderer hands the model stages the hands before a face it could not draw
    (``chunk.hands``): the paste leaves their silhouette as it was."""
    from dubber.faces.hands import silhouette
    from tests.test_hands import _hand

    lay = PixelLayout(320, 240, 8, "420")
    chunk = grey_chunk(lay, noise=False)
    before = yuv_region_to_rgb(chunk.frames, 0, (0, 0, 320, 240), SPEC)
    hand = _hand((150, 175), 24.0, np.pi / 2)  # fingers pointing left over the lips' corner
    chunk.hands = {(0, 0): hand[None]}
    paste_faces(with_face(chunk, (100, 40, 228, 168), lips_ellipse(164, 140, 20, 8)), None,
                NO_COLOUR)
    after = yuv_region_to_rgb(chunk.frames, 0, (0, 0, 320, 240), SPEC)
    changed = np.abs(after - before).max(-1) > 0.01
    covered = silhouette(hand[None], (0, 0, 320, 240), soft=False) > 0
    assert not (changed & covered).any()
    assert changed.sum() > 500 and after[140, 175, 0] > 0.9  # the rest of the mouth: red
    # without the hands the same pixels are painted
    chunk = grey_chunk(lay, noise=False)
    paste_faces(with_face(chunk, (100, 40, 228, 168), lips_ellipse(164, 140, 20, 8)), None,
                NO_COLOUR)
    plain = yuv_region_to_rgb(chunk.frames, 0, (0, 0, 320, 240), SPEC)
    assert (np.abs(plain - before).max(-1)[covered] > 0.01).sum() > 50
