"""Weights registry: manifest, folder precedence, safetensors-only loading, checks, CLI texts."""

import dataclasses
import pickle
import re

import pytest
import torch
import yaml

from dubber.config import load_config
from dubber.errors import WeightsError
from dubber.models.build import build_models
from dubber.models.registry import (KINDS, REPO_WEIGHTS_DIR, build_random, load_model,
                                    read_manifest, resolve_weights_dir, save_weights, sha256_file)
from dubber.weights_cli import describe_preset, list_weights, verify_weights

TINY = load_config("unittest").models
# The weights the default (fast) preset runs with, committed in weights/.
SHIPPED = ["face-vqgan-fast", "pose-vqgan-fast", "generator-fast"]


def _register(folder, name, kind, model, sha=None):
    """Save ``model`` into ``folder`` and write a manifest with one entry for it."""
    path = folder / f"{name}.safetensors"
    digest = save_weights(model, kind, path)
    dims = {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(model.dims).items()}
    entry = dict(name=name, model=kind, file=path.name, sha256=sha or digest, dims=dims,
                 trained_on="random init (test)", figures={"loss": 0.5})
    (folder / "manifest.yaml").write_text(yaml.safe_dump({"weights": [entry]}))
    return path


def test_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("DUBBER_WEIGHTS", raising=False)
    assert resolve_weights_dir(None) == REPO_WEIGHTS_DIR
    monkeypatch.setenv("DUBBER_WEIGHTS", str(tmp_path / "env"))
    assert resolve_weights_dir(None) == tmp_path / "env"
    assert resolve_weights_dir(tmp_path / "cli") == tmp_path / "cli"


def test_saved_weights_load_back_identically(tmp_path):
    model = build_random("generator", TINY.generator, seed=7)
    _register(tmp_path, "gen-tiny", "generator", model)
    loaded = load_model("generator", "gen-tiny", TINY.generator, tmp_path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training


def test_corrupt_file_is_refused_by_sha256(tmp_path):
    path = _register(tmp_path, "vq", "face_vqgan", build_random("face_vqgan", TINY.face_vqgan, 0))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_model("face_vqgan", "vq", TINY.face_vqgan, tmp_path)
    report = verify_weights(tmp_path)
    assert not report.ok and "BAD" in report.text


def test_pickled_checkpoint_is_refused(tmp_path):
    model = build_random("gpen", TINY.gpen, seed=0)
    _register(tmp_path, "g", "gpen", model)
    path = tmp_path / "g.safetensors"
    with open(path, "wb") as f:  # a pickle wearing a safetensors name
        pickle.dump({"state": 1}, f)
    manifest = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    manifest["weights"][0]["sha256"] = sha256_file(path)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_model("gpen", "g", TINY.gpen, tmp_path)
    manifest["weights"][0]["file"] = "g.pt"
    torch.save(model.state_dict(), tmp_path / "g.pt")
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(WeightsError, match="only .safetensors"):
        load_model("gpen", "g", TINY.gpen, tmp_path)


def test_dims_other_than_the_presets_are_refused(tmp_path):
    other = dataclasses.replace(TINY.generator, res_blocks=2)
    _register(tmp_path, "gen", "generator", build_random("generator", other, seed=0))
    with pytest.raises(WeightsError, match="trained with"):
        load_model("generator", "gen", TINY.generator, tmp_path)


def test_missing_weights_name_the_file_and_the_training_command(tmp_path, monkeypatch):
    monkeypatch.delenv("DUBBER_WEIGHTS", raising=False)
    cfg = load_config("fast", {"runtime": {"device": "cpu"}})
    with pytest.raises(WeightsError) as err:
        build_models(cfg, weights_dir=tmp_path)
    msg = str(err.value)
    assert "face-vqgan-fast.safetensors" in msg
    assert "dub train face-vqgan --corpus DIR --preset fast" in msg
    assert "\n" not in msg


def test_env_folder_is_used(tmp_path, monkeypatch):
    """DUBBER_WEIGHTS points the run at a folder whose manifest and files are used."""
    (tmp_path / "generator").mkdir()
    monkeypatch.setenv("DUBBER_WEIGHTS", str(tmp_path / "generator"))
    _register(tmp_path / "generator", "gen-tiny", "generator",
              build_random("generator", TINY.generator, seed=1))
    assert list(read_manifest(resolve_weights_dir())) == ["gen-tiny"]
    assert "gen-tiny" in list_weights()


def test_manifest_dims_match_the_presets():
    entries = read_manifest(REPO_WEIGHTS_DIR)
    for preset in ("fast", "4k-film"):
        m = load_config(preset).models
        for kind, info in KINDS.items():
            if not hasattr(m.weights, kind):  # the mouth driver: one weight for every preset
                continue
            name = getattr(m.weights, kind)
            assert name in entries, f"{preset}: {kind} weights {name!r} not in the manifest"
            e = entries[name]
            assert e.model == kind
            assert info.dims_cls(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in e.dims.items()}) == getattr(m, kind)


def test_unittest_preset_has_no_weights_in_the_manifest():
    assert load_config("unittest").models.random_init
    assert not any("unittest" in n for n in read_manifest(REPO_WEIGHTS_DIR))


def test_describe_4k_film_lists_every_model_with_parameters():
    text = describe_preset("4k-film")
    for title, params in [("Face-VQGAN", "72,141,699"), ("Pose-VQGAN", "72,141,699"),
                          ("lip-sync expert", None), ("lip-sync generator", None),
                          ("GPEN", "71,005,223")]:
        line = next(line for line in text.splitlines() if line.startswith(title + " "))
        assert params is None or params in line
        assert re.search(r"\d{1,3}(,\d{3}){2}", line), line  # at least a million parameters
    assert "512px" in text and "1024x256" in text and "total" in text


def test_list_and_verify_on_the_repository_manifest(monkeypatch):
    monkeypatch.delenv("DUBBER_WEIGHTS", raising=False)
    text = list_weights()
    assert "face-vqgan-4k" in text and "missing" in text
    loose, strict = verify_weights(), verify_weights(strict=True)
    assert loose.ok and not strict.ok  # 4k-film is not trained yet: missing, nothing corrupt
    assert "dub train generator" in strict.text
    # What the fast preset runs with ships in weights/ and matches its sha256.
    assert verify_weights(names=SHIPPED, strict=True).ok
    with pytest.raises(WeightsError, match="not in the manifest"):
        verify_weights(names=["no-such-weight"])


def test_verify_passes_a_good_file(tmp_path):
    _register(tmp_path, "sync", "sync_expert", build_random("sync_expert", TINY.sync_expert, 2))
    report = verify_weights(tmp_path, strict=True)
    assert report.ok, report.text
    assert report.text.startswith("sync: ok")


def test_dub_weights_commands(tmp_path, capsys, monkeypatch):
    from dubber.cli import main

    monkeypatch.delenv("DUBBER_WEIGHTS", raising=False)
    assert main(["weights", "describe", "4k-film"]) == 0
    out = capsys.readouterr().out
    assert "Face-VQGAN" in out and "GPEN" in out and "72,141,699" in out
    assert main(["weights", "list"]) == 0
    assert "generator-4k" in capsys.readouterr().out
    path = _register(tmp_path, "vq", "face_vqgan", build_random("face_vqgan", TINY.face_vqgan, 0))
    assert main(["weights", "verify", "--weights", str(tmp_path)]) == 0
    assert "vq: ok" in capsys.readouterr().out
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    assert main(["weights", "verify", "--weights", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "vq: BAD" in captured.out
    assert captured.err.strip().splitlines() == ["dub: error: some weights failed verification (see above)"]
    assert main(["weights", "describe", "no-such-preset"]) == 2
