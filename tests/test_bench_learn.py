"""`python -m dubber.bench learn`: the learnability figures of trained weights."""

import json
import shutil

import pytest

from dubber.config import PRESETS_DIR
from tests.train_fixtures import train_args


@pytest.mark.parametrize("cue", ["aperture_cue: true",
                                 "aperture_cue: true, cue_only: true, cue_dims: 3"])
def test_bench_learn_reports_every_model_and_the_aperture_cue(dub, tiny_corpus, tiny_weights,
                                                             tmp_path, cue):
    """On the tiny corpus with tiny weights (a generator with the aperture cue trained a few
    steps): every figure is there and in range. (A VQGAN trained for seconds draws no face the
    mesh can find, so its mesh figures may be NaN here.)"""
    from dubber.bench.learn import main

    wdir = tmp_path / "w"
    shutil.copytree(tiny_weights, wdir)
    preset = tmp_path / "unittest.yaml"
    text = (PRESETS_DIR / "unittest.yaml").read_text()
    preset.write_text(text.replace("res_blocks: 1}", f"res_blocks: 1, {cue}}}", 1))
    r = dub(*train_args("generator", tiny_corpus, "--steps", "4", "--batch-size", "2", "-q",
                        "--set", "val_windows=4", "--set", "sync_weight=0", weights=wdir,
                        run=tmp_path / "run", preset=preset))
    assert r.code == 0, r
    out = tmp_path / "figures.json"
    assert main(["--corpus", str(tiny_corpus), "--preset", str(preset), "--weights", str(wdir),
                 "--json", str(out)]) == 0
    f = {k: v["value"] for k, v in json.loads(out.read_text())["figures"].items()}
    assert f["split"] == "train"  # one video: no val split, and it says so
    assert 5 < f["face_vqgan_psnr"] < 60 and 5 < f["pose_vqgan_psnr"] < 60
    assert 0 <= f["sync_accuracy"] <= 1
    assert f["generator_l1"] > 0 and f["generator_l1_copy_reference"] > 0
    assert -1 <= f["generator_aperture_from_speech_corr"] <= 1
    for k in ("generator_mesh_told_true_corr", "generator_mesh_from_speech_corr",
              "generator_mesh_vqgan_reconstruction_corr"):
        assert f[k] is None or -1 <= f[k] <= 1, k  # None: not measurable (NaN)
    assert f["generator_cue_effect_lower"] >= 0
