"""Face/Pose-VQGAN: shapes, dtypes, codebook consistency, the pose mask, at paper and small sizes."""

import pytest
import torch

from dubber.config import load_config
from dubber.models.dims import VQGANDims
from dubber.models.registry import build_random, count_parameters
from dubber.models.vqgan import VQGAN, mask_lower_face

PAPER = VQGANDims()


def test_paper_dims_are_the_papers():
    assert (PAPER.resolution, PAPER.grid, PAPER.n_embed, PAPER.embed_dim) == (256, 16, 1024, 256)


@pytest.mark.parametrize("preset", ["unittest", "fast"])
def test_small_vqgan_roundtrip_shapes_and_codebook(preset):
    d = load_config(preset).models.face_vqgan
    model = build_random("face_vqgan", d, seed=0)
    x = torch.rand(2, 3, d.resolution, d.resolution) * 2 - 1
    with torch.inference_mode():
        codes, emb = model.encode(x)
        assert codes.shape == (2, d.grid, d.grid) and codes.dtype == torch.int64
        assert 0 <= codes.min() and codes.max() < d.n_embed
        assert emb.shape == (2, d.embed_dim, d.grid, d.grid) and emb.dtype == torch.float32
        # The embeddings are exactly the codebook vectors of the codes ...
        torch.testing.assert_close(model.embed_codes(codes), emb)
        # ... so quantizing them again changes nothing.
        again, _ = model.quantize_embeddings(emb)
        assert torch.equal(again, codes)
        out = model.decode(emb)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_paper_size_vqgan_encode_decode_batch_of_one():
    torch.manual_seed(0)
    model = VQGAN(PAPER).eval()
    with torch.inference_mode():
        codes, emb = model.encode(torch.rand(1, 3, 256, 256) * 2 - 1)
        assert codes.shape == (1, 16, 16)
        assert emb.shape == (1, 256, 16, 16)
        assert model.decode(emb).shape == (1, 3, 256, 256)


def test_paper_vqgan_parameter_count_is_taming_f16_size():
    # taming-transformers' f=16, 1024-code VQGAN has about 72M parameters (no discriminator).
    assert 70e6 < count_parameters("face_vqgan", PAPER) < 75e6


def test_wrong_input_size_is_refused():
    d = load_config("unittest").models.face_vqgan
    model = build_random("face_vqgan", d, seed=0)
    with pytest.raises(ValueError, match="expected images"):
        model.encode(torch.zeros(1, 3, d.resolution * 2, d.resolution * 2))


def test_pose_input_hides_the_mouth():
    """Two faces that differ only below the mask line give the same Pose-VQGAN codes."""
    d = load_config("unittest").models.pose_vqgan
    model = build_random("pose_vqgan", d, seed=3)
    a = torch.rand(1, 3, d.resolution, d.resolution) * 2 - 1
    b = a.clone()
    b[:, :, d.resolution // 2 :, :] = torch.rand_like(b[:, :, d.resolution // 2 :, :])
    ma, mb = mask_lower_face(a, 0.5), mask_lower_face(b, 0.5)
    assert torch.equal(ma, mb)
    assert torch.equal(ma[:, :, : d.resolution // 2], a[:, :, : d.resolution // 2])
    with torch.inference_mode():
        assert torch.equal(model.encode(ma)[0], model.encode(mb)[0])
        # Unmasked, the lower half does reach the codes.
        assert not torch.equal(model.encode(a)[1], model.encode(b)[1])
