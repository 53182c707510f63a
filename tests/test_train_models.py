"""`dub train sync-expert|generator|gpen`: a few CPU steps on the tiny corpus learn."""

from __future__ import annotations

from dubber.models.registry import read_manifest
from tests.train_fixtures import PRESET, train_losses


def _mean(xs):
    return sum(xs) / len(xs)


def test_sync_expert_learns(dub, tiny_corpus, tiny_weights, tmp_path):
    run = tmp_path / "run"
    r = dub(
        "train",
        "sync-expert",
        "--corpus",
        tiny_corpus,
        "--preset",
        PRESET,
        "--weights",
        tiny_weights,
        "--run-dir",
        run,
        "--steps",
        "16",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--no-publish",
        "-q",
        "--set",
        "val_windows=16",
    )
    assert r.code == 0, r
    losses = train_losses(run)
    assert _mean(losses[-4:]) < _mean(losses[:4]), losses
    assert "accuracy" in r.out


def test_generator_learns_with_the_frozen_expert(dub, tiny_corpus, tiny_weights, tmp_path):
    run = tmp_path / "run"
    wdir = tmp_path / "w"
    import shutil

    shutil.copytree(tiny_weights, wdir)
    r = dub(
        "train",
        "generator",
        "--corpus",
        tiny_corpus,
        "--preset",
        PRESET,
        "--weights",
        wdir,
        "--run-dir",
        run,
        "--steps",
        "10",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "-q",
        "--set",
        "val_windows=4",
    )
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
    common = ["train", "generator", "--corpus", tiny_corpus, "--preset", PRESET, "--weights",
              wdir, "--steps", "6", "--batch-size", "2", "--lr", "1e-3", "-q", "--no-publish",
              "--set", "val_windows=4"]
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
    r = dub(
        "train",
        "generator",
        "--corpus",
        tiny_corpus,
        "--preset",
        PRESET,
        "--weights",
        tmp_path,
        "--steps",
        "1",
    )
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and "dub train face-vqgan" in r.err


def test_gpen_restores_degraded_crops(dub, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    r = dub(
        "train",
        "gpen",
        "--corpus",
        tiny_corpus,
        "--preset",
        PRESET,
        "--weights",
        tmp_path / "w",
        "--run-dir",
        run,
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--lr",
        "2e-3",
        "-q",
        "--set",
        "val_images=4",
    )
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
