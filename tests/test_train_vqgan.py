"""`dub train face-vqgan|pose-vqgan`: loss goes down, resume continues, weights load."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from dubber.config import load_config
from dubber.models.registry import load_model, read_manifest
from tests.train_fixtures import PRESET, train_args, train_losses

FAST = ["--batch-size", "4", "--lr", "1e-3", "-q", "--set", "val_images=8"]


def test_face_vqgan_learns_and_lands_in_the_weights_folder(dub, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "12", *FAST, weights=tmp_path / "w",
                        run=run))
    assert r.code == 0, r
    losses = train_losses(run)
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0], losses
    entry = read_manifest(tmp_path / "w")["face-vqgan-unittest"]
    assert entry.sha256 and entry.figures["psnr"] > 10 and entry.figures["steps"] == 12
    assert "122 train frames" in entry.trained_on
    # The registry loads it for the preset's dims (sha256, dims and state dict checked).
    cfg = load_config(PRESET)
    load_model("face_vqgan", entry.name, cfg.models.face_vqgan, tmp_path / "w", PRESET)


def test_pose_vqgan_trains_on_masked_crops(dub, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    r = dub(*train_args("pose-vqgan", tiny_corpus, "--steps", "8", *FAST, weights=tmp_path / "w",
                        run=run))
    assert r.code == 0, r
    losses = train_losses(run)
    assert sum(losses[-3:]) / 3 < losses[0], losses
    assert read_manifest(tmp_path / "w")["pose-vqgan-unittest"].sha256


def test_resume_continues_where_the_checkpoint_left_off(dub, tiny_corpus, tmp_path):
    common = ["--weights", tmp_path / "w", "--checkpoint-every", "2", "--no-publish", *FAST]
    # Interrupted after 4 of 6 steps, then resumed ...
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "4", *common, run=tmp_path / "a"))
    assert r.code == 0, r
    assert json.loads((tmp_path / "a" / "checkpoint.json").read_text())["step"] == 4
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "6", "--resume", *common,
                        run=tmp_path / "a"))
    assert r.code == 0, r
    assert "6 steps" in r.out
    steps = [int(s) for s in [row for row in _rows(tmp_path / "a")]]
    assert steps == [1, 2, 3, 4, 5, 6]
    # Resuming a finished run (to publish it, say) reports the run's losses, not NaN.
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "6", "--resume", *common,
                        run=tmp_path / "a"))
    assert r.code == 0 and "6 steps" in r.out and "nan" not in r.out.lower(), r
    # ... ends where an uninterrupted run ends: same batches, same optimizer state.
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "6", *common, run=tmp_path / "b"))
    assert r.code == 0, r
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    key = "model/model/decoder.conv_out.weight"
    assert (a[key] - b[key]).abs().max() < 1e-5


def _rows(run):
    import csv

    with open(run / "metrics.csv", newline="") as f:
        return [r["step"] for r in csv.DictReader(f) if r["split"] == "train"]


@pytest.mark.parametrize(
    "resume, words", [(False, "already has a checkpoint"), (True, "no checkpoint")]
)
def test_resume_mistakes_are_one_line_exit_2(dub, tiny_corpus, tmp_path, resume, words):
    run = tmp_path / "run"
    if not resume:
        assert (
            dub(*train_args("face-vqgan", tiny_corpus, "--steps", "1", "--no-publish", *FAST,
                            run=run)).code
            == 0
        )
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "2", "--no-publish", *FAST,
                        *(["--resume"] if resume else []), run=run))
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and words in r.err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_face_vqgan_trains_under_amp_on_cuda(dub, tiny_corpus, tmp_path, precision):
    run = tmp_path / "run"
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "8", "--device", "cuda", "--set",
                        f"precision={precision}", *FAST, weights=tmp_path / "w", run=run))
    assert r.code == 0, r
    losses = train_losses(run)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses


def test_keep_best_publishes_the_best_validated_network(dub, tiny_corpus, tmp_path):
    from tests.train_fixtures import read_metrics

    run, wdir = tmp_path / "run", tmp_path / "w"
    r = dub(*train_args("face-vqgan", tiny_corpus, "--steps", "6", "--set", "val_every=2", "--set",
                        "keep_best=true", *FAST, weights=wdir, run=run))
    assert r.code == 0, r
    vals = {int(row["step"]): float(row["psnr"]) for row in read_metrics(run) if row["split"] == "val"}
    best_step = max(vals, key=vals.get)
    entry = read_manifest(wdir)["face-vqgan-unittest"]
    assert entry.figures["best_step"] == best_step
    assert entry.figures["psnr"] == pytest.approx(vals[best_step], abs=1e-3)
    # The published file holds the network of that step (as saved in best.safetensors).
    best = load_file(str(run / "best.safetensors"))
    published = load_file(str(wdir / "face-vqgan-unittest.safetensors"))
    key = "decoder.conv_out.weight"
    assert torch.allclose(published[key].float(), best[key].half().float())
