"""`dub train sync-expert|generator|gpen`: a few CPU steps on the tiny corpus learn."""

from __future__ import annotations

import pytest

from dubber.models.registry import read_manifest
from dubber.config import PRESETS_DIR
from tests.train_fixtures import read_metrics, train_args, train_losses


def _mean(xs):
    return sum(xs) / len(xs)


def test_sync_expert_learns(dub, tiny_corpus, tiny_weights, tmp_path):
    run = tmp_path / "run"
    r = dub(*train_args("sync-expert", tiny_corpus, "--steps", "16", "--batch-size", "16", "--lr",
                        "1e-3", "--no-publish", "-q", "--set", "val_windows=16",
                        weights=tiny_weights, run=run))
    assert r.code == 0, r
    losses = train_losses(run)
    assert _mean(losses[-4:]) < _mean(losses[:4]), losses
    assert "accuracy" in r.out


def test_generator_learns_with_the_frozen_expert(dub, tiny_corpus, tiny_weights, tmp_path):
    run = tmp_path / "run"
    wdir = tmp_path / "w"
    import shutil

    shutil.copytree(tiny_weights, wdir)
    r = dub(*train_args("generator", tiny_corpus, "--steps", "10", "--batch-size", "2", "--lr",
                        "1e-3", "-q", "--set", "val_windows=4", weights=wdir, run=run))
    assert r.code == 0, r
    l1 = train_losses(run, "l1")
    assert _mean(l1[-3:]) < 0.9 * _mean(l1[:3]), l1
    sync = train_losses(run, "sync")
    assert all(s > 0 for s in sync)  # the expert's loss is in the objective
    entry = read_manifest(wdir)["generator-unittest"]
    assert entry.sha256 and "l1" in entry.figures


def test_generator_trains_on_l1_alone_before_the_expert_exists(dub, tiny_corpus, tiny_weights,
                                                               tmp_path):
    import shutil

    wdir = tmp_path / "w"
    shutil.copytree(tiny_weights, wdir)
    (wdir / "sync-expert-unittest.safetensors").unlink()
    common = train_args("generator", tiny_corpus, "--steps", "6", "--batch-size", "2", "--lr",
                        "1e-3", "-q", "--no-publish", "--set", "val_windows=4", weights=wdir)
    # With the sync loss on, the missing expert is one line saying what to do.
    r = dub(*common, "--run-dir", tmp_path / "a")
    assert r.code == 2 and r.err.count("\n") == 1, r
    assert "dub train sync-expert" in r.err and "sync_weight=0" in r.err
    # With it off, the generator learns from the L1 term alone.
    r = dub(*common, "--run-dir", tmp_path / "b", "--set", "sync_weight=0")
    assert r.code == 0, r
    l1 = train_losses(tmp_path / "b", "l1")
    assert _mean(l1[-2:]) < _mean(l1[:2]), l1


def test_generator_without_a_trained_vqgan_says_what_to_train(dub, tiny_corpus, tmp_path):
    r = dub(*train_args("generator", tiny_corpus, "--steps", "1", weights=tmp_path))
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and "dub train face-vqgan" in r.err


def test_gpen_restores_degraded_crops(dub, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    r = dub(*train_args("gpen", tiny_corpus, "--steps", "10", "--batch-size", "4", "--lr", "2e-3",
                        "-q", "--set", "val_images=4", weights=tmp_path / "w", run=run))
    assert r.code == 0, r
    l1 = train_losses(run, "l1")
    assert _mean(l1[-3:]) < _mean(l1[:3]), l1


def test_mouth_weight_puts_the_l1_on_the_masked_rows():
    """mouth_weight > 1 weighs errors in the rows the pose input hides (the mouth) above
    those the pose shows; a uniform error costs the same either way."""
    import types

    import torch

    from dubber.train.generator import GeneratorTrainer

    stub = types.SimpleNamespace(hp=types.SimpleNamespace(mouth_weight=8.0), mouth_row=lambda: 8)
    target = torch.zeros(2, 4, 16, 16)
    mouth_err, top_err = target.clone(), target.clone()
    mouth_err[..., 8:, :] = 1.0
    top_err[..., :8, :] = 1.0
    weighted = lambda pred: float(GeneratorTrainer._weighted_l1(stub, pred, target))  # noqa: E731
    assert weighted(mouth_err) > 1.5 * float(mouth_err.mean())
    assert weighted(top_err) < 0.5 * float(top_err.mean())
    assert abs(weighted(torch.ones_like(target)) - 1.0) < 1e-6


def test_pose_jitter_takes_the_pose_of_nearby_frames_of_the_same_segment():
    """pose_jitter k: each frame's pose input comes from a frame at most k away in its own
    segment (so the generator cannot recall a frame's mouth from its upper face), while the
    target and the mel stay the frame's own; without it the pose is the frame's own."""
    import numpy as np
    import torch

    from dubber.train.codes import FrozenCodes
    from dubber.train.corpus import Segment, SegmentInfo
    from dubber.train.generator import GeneratorWindows

    n, g = 12, 2
    info = SegmentInfo("s.npz", "v", 0, n, 0, 1.0)
    seg = Segment(info, np.zeros((n, 1, 1, 3), np.uint8), np.zeros((n, 1, 1, 3), np.uint8),
                  np.zeros((80, 4 * n + 100), np.float32))
    codes = FrozenCodes(torch.eye(n), {"s.npz": np.repeat(np.arange(n), g * g).reshape(n, g, g)})
    windows = GeneratorWindows([seg], codes, codes, frames=5, mel_steps=20, expert_steps=20)
    ws = np.arange(len(windows.windows))
    frame_of = lambda emb: emb[:, :, 0, 0].argmax(1).numpy()  # noqa: E731
    b = windows.batch(ws, torch.Generator().manual_seed(0))
    assert np.array_equal(frame_of(b["pose"]), frame_of(b["target"]))
    b = windows.batch(ws, torch.Generator().manual_seed(0), pose_jitter=3)
    pose, target = frame_of(b["pose"]), frame_of(b["target"])
    assert np.abs(pose - target).max() <= 3 and (pose != target).mean() > 0.5
    assert pose.min() >= 0 and pose.max() < n


@pytest.mark.parametrize("cue", ["aperture_cue: true", "aperture_cue: true, cue_only: true",
                                 "aperture_cue: true, cue_only: true, cue_dims: 3"])
def test_generator_with_the_aperture_cue_learns_the_opening_from_the_speech(
        dub, tiny_corpus, tiny_weights, tmp_path, cue):
    """A generator with ``aperture_cue`` trains on the corpus' lip apertures: the squared
    error of the opening it predicts from the mel falls, validation reports how well that
    opening follows the true one, and the published weights carry the cue in their dims."""
    import shutil

    wdir = tmp_path / "w"
    shutil.copytree(tiny_weights, wdir)
    preset = tmp_path / "unittest.yaml"  # the unittest preset with the cue on
    text = (PRESETS_DIR / "unittest.yaml").read_text()
    assert "res_blocks: 1}" in text
    preset.write_text(text.replace("res_blocks: 1}", f"res_blocks: 1, {cue}}}", 1))
    run = tmp_path / "run"
    r = dub(*train_args("generator", tiny_corpus, "--steps", "16", "--batch-size", "2", "--lr",
                        "2e-3", "-q", "--set", "val_windows=4", "--set", "sync_weight=0",
                        "--set", "aperture_weight=1", weights=wdir, run=run, preset=preset))
    assert r.code == 0, r
    mse = train_losses(run, "aperture_mse")
    assert _mean(mse[-4:]) < _mean(mse[:4]), mse
    val = [row for row in read_metrics(run) if row["split"] == "val"]
    assert val and all(-1 <= float(row["aperture_corr"]) <= 1 for row in val)
    entry = read_manifest(wdir)["generator-unittest"]
    assert entry.dims["aperture_cue"] is True and "aperture_corr" in entry.figures
    assert entry.dims["cue_only"] is ("cue_only" in cue)
    if "cue_dims: 3" in cue:  # taught the mouth track's three parameters from the face mesh
        assert entry.dims["cue_dims"] == 3 and "width_corr" in entry.figures


def test_mel_augmentation_varies_the_speech_and_keeps_the_silence_floor():
    import torch

    from dubber.media.audio import SILENCE_LOG_MEL
    from dubber.train.generator import augment_mel

    mel = torch.full((6, 80, 20), SILENCE_LOG_MEL)
    mel[:3] = torch.randn(3, 80, 20)
    out = augment_mel(mel, torch.Generator().manual_seed(0))
    assert out.shape == mel.shape and out.min() >= SILENCE_LOG_MEL
    assert (out[:3] - mel[:3]).abs().mean() > 0.1  # the speech is varied
    assert (out[3:] - mel[3:]).abs().mean() < 0.5 * (out[:3] - mel[:3]).abs().mean()


def test_adam_lets_named_parameters_learn_faster():
    import torch

    from dubber.train.optim import adam

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    opt = adam([*a.parameters(), *b.parameters()], 1e-3, {10.0: list(b.parameters())})
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
