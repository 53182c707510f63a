"""The model stages over chunks: real clip and speech, 8/10-bit, colour, references, CUDA."""

import dataclasses
from contextlib import closing
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from dubber.chunk import Chunk
from dubber.config import load_config
from dubber.errors import RunError
from dubber.media.audio import AudioTrack
from dubber.media.color import ColorSpec, rgb_to_yuv_region, yuv_region_to_rgb
from dubber.media.decode import read_chunks
from dubber.media.frames import FrameBatch, PixelLayout
from dubber.media.probe import probe
from dubber.faces.crop import square_box
from dubber.models.build import build_models
from dubber.chunk import run_stages
from dubber.stages.model_chain import MODEL_STAGES

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLIP = MEDIA / "clips" / "man_map_844_en.mp4"
SPEECH = MEDIA / "speech" / "en_radio_8s.wav"
CFG = load_config("unittest")


@dataclasses.dataclass
class Face:
    """The two attributes the model stages need of a selected face."""

    box: tuple[float, float, float, float]
    track_id: int = 0


def real_chunk(n: int = 8, faces_on: int = 6) -> Chunk:
    """The first ``n`` frames of the real clip, decoded by the media layer, with the real
    speech track attached as the render loop attaches it (the stage computes the mel)."""
    chunks = read_chunks(probe(CLIP), chunk_frames=n)
    with closing(chunks):
        chunk = next(iter(chunks))
    chunk.faces = [[Face((300.0, 160.0, 560.0, 480.0))] if i < faces_on else [] for i in range(n)]
    chunk.color = ColorSpec("bt601", False)
    return chunk


def synthetic_chunk(layout: PixelLayout, n: int, seed: int = 0) -> Chunk:
    rng = np.random.default_rng(seed)
    lo, hi = 16 << (layout.bit_depth - 8), 235 << (layout.bit_depth - 8)
    cw, ch = layout.chroma_size
    y, u, v = (rng.integers(lo, hi, shape, dtype=layout.dtype)
               for shape in ((n, layout.height, layout.width), (n, ch, cw), (n, ch, cw)))
    fb = FrameBatch.from_arrays(layout, y, u, v)
    chunk = Chunk(0, np.arange(n), np.arange(n), Fraction(1, 25), fb)
    chunk.mel = torch.randn(n, 80, CFG.models.generator.mel_steps)
    return chunk


def planes_copy(fb: FrameBatch):
    """Copies of all planes, stacked: (N, H, W), (N, Hc, Wc), (N, Hc, Wc)."""
    return fb.stack()


def square_mask(layout: PixelLayout, sq, shift=(0, 0)) -> np.ndarray:
    """Boolean mask of a square on a plane subsampled by ``shift``."""
    sx, sy = shift
    h, w = -(-layout.height >> sy), -(-layout.width >> sx)
    m = np.zeros((h, w), bool)
    m[max(sq[1], 0) >> sy : -(-min(sq[3], layout.height) >> sy),
      max(sq[0], 0) >> sx : -(-min(sq[2], layout.width) >> sx)] = True
    return m


@pytest.mark.skipif(not CLIP.exists(), reason="shared test media not present")
def test_real_clip_and_speech_change_only_the_face_squares():
    chunk = real_chunk()
    before = planes_copy(chunk.frames)
    models = build_models(CFG)
    with AudioTrack(SPEECH) as dub:
        chunk.dub = dub
        chunk = run_stages(chunk, models, CFG)
    assert chunk.mel.shape == (8, 80, CFG.models.generator.mel_steps)
    lay = chunk.frames.layout
    r, d = CFG.models.face_vqgan.resolution, CFG.models.face_vqgan
    assert chunk.crops.images.shape == (6, 3, r, r)
    assert chunk.face_emb.shape == chunk.pose_emb.shape == (6, d.embed_dim, d.grid, d.grid)
    assert chunk.gen_emb.shape == (6, d.embed_dim, d.grid, d.grid)
    assert chunk.generated.shape == (6, 3, CFG.models.gpen.size, CFG.models.gpen.size)
    sq = chunk.crops.square[0]
    after = planes_copy(chunk.frames)
    for plane, (old, new) in enumerate(zip(before, after)):
        shift = (0, 0) if plane == 0 else lay.chroma_shift
        inside = square_mask(lay, sq, shift)
        for i in range(len(chunk)):
            if i >= 6:  # no face: the frame is untouched
                assert np.array_equal(old[i], new[i])
                continue
            assert np.array_equal(old[i][~inside], new[i][~inside])
            if plane == 0:
                diff = np.abs(old[i][inside].astype(int) - new[i][inside].astype(int))
                assert diff.mean() > 2  # random models: the face visibly changed
    assert after[0].dtype == np.uint8


def test_the_chain_is_seeded_and_repeatable():
    outs = []
    for _ in range(2):
        chunk = synthetic_chunk(PixelLayout(320, 240, 8, "420"), 3)
        chunk.faces = [[Face((100.0, 60.0, 180.0, 160.0))]] * 3
        outs.append(planes_copy(run_stages(chunk, build_models(CFG), CFG).frames)[0])
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("chroma", ["420", "422", "444"])
def test_ten_bit_frames_stay_ten_bit_and_faces_at_the_edge_work(chroma):
    lay = PixelLayout(200, 120, 10, chroma)
    chunk = synthetic_chunk(lay, 2)
    chunk.faces = [[Face((-20.0, 40.0, 60.0, 130.0), 1)], [Face((150.0, 10.0, 215.0, 80.0), 2)]]
    before = planes_copy(chunk.frames)
    chunk = run_stages(chunk, build_models(CFG), CFG)
    y = planes_copy(chunk.frames)[0]
    assert y.dtype == np.uint16 and y.max() <= 1023
    assert not np.array_equal(before[0], y)
    sq = chunk.crops.square
    assert sq[0][0] < 0 and sq[1][2] > lay.width  # squares reach past the edges, padded
    untouched = ~square_mask(lay, sq[0])
    assert np.array_equal(before[0][0][untouched], y[0][untouched])


def test_track_first_reference_is_kept_across_chunks():
    models = build_models(CFG)
    lay = PixelLayout(160, 160, 8, "420")
    first = synthetic_chunk(lay, 2, seed=1)
    first.faces = [[Face((40.0, 40.0, 120.0, 120.0), 7)]] * 2
    run_stages(first, models, CFG)
    ref = first.face_emb[0]
    assert torch.equal(models.references[7], ref)
    second = synthetic_chunk(lay, 2, seed=2)
    second.faces = [[Face((40.0, 40.0, 120.0, 120.0), 7)]] * 2
    run_stages(second, models, CFG)
    assert torch.equal(models.references[7], ref)  # still the first frame ever seen
    # With the "self" policy the same chunk gives another result.
    cfg_self = dataclasses.replace(CFG, models=dataclasses.replace(CFG.models, reference="self"))
    third = synthetic_chunk(lay, 2, seed=2)
    third.faces = second.faces
    run_stages(third, build_models(cfg_self), cfg_self)
    assert not torch.equal(third.gen_emb, second.gen_emb)


def test_chunk_without_faces_passes_through():
    chunk = synthetic_chunk(PixelLayout(64, 64, 8, "420"), 3)
    chunk.faces = [[], [], []]
    before = planes_copy(chunk.frames)
    run_stages(chunk, build_models(CFG), CFG)
    assert all(np.array_equal(a, b) for a, b in zip(before, planes_copy(chunk.frames)))
    assert len(chunk.crops) == 0


def test_missing_mel_is_a_clear_error():
    chunk = synthetic_chunk(PixelLayout(64, 64, 8, "420"), 2)
    chunk.faces = [[Face((10.0, 10.0, 50.0, 50.0))]] * 2
    chunk.mel = None
    with pytest.raises(RunError, match=r"chunk.mel"):
        run_stages(chunk, build_models(CFG), CFG)


def test_stage_order():
    names = [s.__name__ for s in MODEL_STAGES]
    assert names == ["crop_faces", "encode_faces", "generate_faces", "decode_faces",
                     "restore_faces", "paste_faces", "watermark_faces"]


def test_square_box_is_square_on_the_chroma_grid():
    lay = PixelLayout(1920, 1080, 8, "420")
    x0, y0, x1, y1 = square_box((101.3, 57.9, 301.1, 307.7), 1.4, lay)
    assert x1 - x0 == y1 - y0 >= 1.4 * (307.7 - 57.9)
    assert x0 % 2 == y0 % 2 == 0 and (x1 - x0) % 2 == 0
    assert abs((x0 + x1) / 2 - 201.2) <= 2 and abs((y0 + y1) / 2 - 182.8) <= 2


# --- colour -----------------------------------------------------------------------------

@pytest.mark.parametrize("matrix,red_y", [("bt601", 81), ("bt709", 63), ("bt2020", 74)])
def test_pure_red_gets_the_matrix_luma(matrix, red_y):
    fb = FrameBatch.empty(PixelLayout(4, 4, 8, "420"), 1)
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0] = 1
    rgb_to_yuv_region(rgb, fb, 0, (0, 0, 4, 4), ColorSpec(matrix, False))
    y, _, v = fb.planes(0)
    assert (y == red_y).all() and (v == 240).all()


@pytest.mark.parametrize("bits,full,white,mid", [(8, False, 235, 128), (10, False, 940, 512),
                                                  (8, True, 255, 128), (10, True, 1023, 512)])
def test_white_and_grey_code_values(bits, full, white, mid):
    fb = FrameBatch.empty(PixelLayout(4, 2, bits, "420"), 1)
    rgb = np.ones((2, 4, 3), np.float32)
    rgb[:, 2:] = 0.5
    rgb_to_yuv_region(rgb, fb, 0, (0, 0, 4, 2), ColorSpec("bt709", full))
    y, u, v = fb.planes(0)
    assert (y[:, :2] == white).all()
    assert (u == mid).all() and (v == mid).all()


@pytest.mark.parametrize("matrix", ["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("bits,full", [(8, False), (8, True), (10, False)])
@pytest.mark.parametrize("chroma", ["420", "444"])
def test_rgb_roundtrip_through_a_region(matrix, bits, full, chroma):
    lay = PixelLayout(40, 30, bits, chroma)
    fb = FrameBatch.empty(lay, 1)
    for plane, value in zip(fb.writable_planes(0), (7, 9, 11)):
        plane[:] = value
    rng = np.random.default_rng(0)
    blocks = rng.uniform(0.05, 0.95, (7, 8, 3)).astype(np.float32)
    rgb = np.repeat(np.repeat(blocks, 2, 0), 2, 1)  # constant over each 2x2 chroma block
    box = (4, 6, 20, 20)
    spec = ColorSpec(matrix, full)
    rgb_to_yuv_region(rgb, fb, 0, box, spec)
    back = yuv_region_to_rgb(fb, 0, box, spec)
    assert np.abs(back - rgb).max() < 3.0 / (219 << (bits - 8))
    outside = np.ones((30, 40), bool)
    outside[6:20, 4:20] = False
    assert (fb.planes(0)[0][outside] == 7).all()


def test_region_off_the_chroma_grid_is_refused():
    fb = FrameBatch.empty(PixelLayout(8, 8, 8, "420"), 1)
    with pytest.raises(ValueError, match="chroma grid"):
        yuv_region_to_rgb(fb, 0, (1, 0, 5, 4), ColorSpec())


# --- CUDA -------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_chain_on_cuda(precision):
    cfg = dataclasses.replace(CFG, models=dataclasses.replace(CFG.models, precision=precision))
    models = build_models(cfg, device="cuda")
    assert next(models.generator.parameters()).is_cuda
    chunk = synthetic_chunk(PixelLayout(640, 360, 8, "420"), 4)
    chunk.faces = [[Face((200.0, 80.0, 360.0, 280.0))]] * 4
    before = planes_copy(chunk.frames)[0]
    chunk = run_stages(chunk, models, cfg)
    assert chunk.gen_emb.is_cuda
    assert torch.isfinite(chunk.generated).all()
    assert not np.array_equal(before, planes_copy(chunk.frames)[0])
    # The paper-size generator and Face-VQGAN run on the device too, one face.
    from dubber.models.registry import build_random
    paper = load_config("4k-film").models
    vq = build_random("face_vqgan", paper.face_vqgan, 0).cuda()
    gen = build_random("generator", paper.generator, 0).cuda()
    with torch.inference_mode(), models.autocast():
        emb = vq.encode(torch.zeros(1, 3, 256, 256, device="cuda"))[1]
        pred = gen(emb, emb, torch.zeros(1, 80, 20, device="cuda"))
        assert vq.decode(vq.quantize_embeddings(pred)[1]).shape == (1, 3, 256, 256)


# --- the render loop ----------------------------------------------------------------------

@pytest.mark.skipif(not CLIP.exists(), reason="shared test media not present")
def test_render_loop_runs_the_model_stages_on_a_real_clip(tmp_path):
    """The media layer's render() with the model stages (unittest preset) on a real clip and
    real speech: every frame is written, the face square changes, the rest barely does."""
    from dubber.pipeline import render

    box = (300.0, 160.0, 560.0, 480.0)

    def select_face(chunk, models, cfg):  # stands in for the analysis lookup
        chunk.faces = [[Face(box)] for _ in range(len(chunk))]
        return chunk

    models = build_models(CFG)
    out = tmp_path / "dubbed.mp4"
    result = render(CLIP, SPEECH, out, CFG, stages=(select_face, *MODEL_STAGES), models=models)
    assert result.frames == probe(CLIP).frame_count == probe(out).frame_count
    with closing(read_chunks(probe(CLIP), chunk_frames=4)) as a, \
            closing(read_chunks(probe(out), chunk_frames=4)) as b:
        y_in, y_out = next(iter(a)).frames.stack()[0], next(iter(b)).frames.stack()[0]
    sq = square_box(box, CFG.models.crop_scale, PixelLayout(844, 844, 8, "420"))
    inside = square_mask(PixelLayout(844, 844, 8, "420"), sq)
    diff = np.abs(y_in.astype(int) - y_out.astype(int))
    assert diff[:, inside].mean() > 10 * max(diff[:, ~inside].mean(), 0.1)


def test_benchmark_reports_every_stage():
    from dubber.bench.models import bench_preset

    rows = bench_preset("unittest", frames=1, device="cpu", gpen=True, size=(320, 240))
    assert [name for name, _ in rows] == [s.__name__ for s in MODEL_STAGES]
    assert all(ms > 0 for _, ms in rows)


def test_a_tracks_reference_is_dropped_once_its_last_frame_is_generated():
    """A film has thousands of tracks: the reference kept for each is let go when the faces
    stage says the track has ended (after this chunk has used it), also on a chunk where it
    no longer speaks."""
    models = build_models(CFG)
    lay = PixelLayout(160, 160, 8, "420")
    chunk = synthetic_chunk(lay, 2, seed=1)
    chunk.faces = [[Face((40.0, 40.0, 120.0, 120.0), 7)], [Face((40.0, 40.0, 120.0, 120.0), 8)]]
    run_stages(chunk, models, CFG)
    assert set(models.references) == {7, 8}
    ended = synthetic_chunk(lay, 2, seed=2)
    ended.faces = [[Face((40.0, 40.0, 120.0, 120.0), 7)]] * 2
    ended.tracks_ended = [7]
    run_stages(ended, models, CFG)
    assert len(ended.gen_emb) == 2 and set(models.references) == {8}
    silent = synthetic_chunk(lay, 2, seed=3)
    silent.faces = [[], []]
    silent.tracks_ended = [8]
    run_stages(silent, models, CFG)
    assert models.references == {}


def test_reset_forgets_the_references_of_the_previous_title():
    models = build_models(CFG)
    chunk = synthetic_chunk(PixelLayout(96, 96, 8, "420"), 1)
    chunk.faces = [[Face((20.0, 20.0, 70.0, 70.0), 0)]]
    run_stages(chunk, models, CFG)
    assert 0 in models.references
    models.reset()
    assert models.references == {}
