"""Session fixtures for the training tests: one tiny corpus from one short real clip, and
tiny trained unittest-preset weights (made once, a few steps each).

The corpus is ``clips/woman_glasses_524_en.mp4`` (4.9 s, one speaking face) prepared at
64 px: 122 crops in one single-speaker segment, no val split (one video), so validation
runs on the train frames. Everything runs on the CPU in seconds.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.helpers import CLIPS

CLIP = CLIPS / "woman_glasses_524_en.mp4"
PRESET = "unittest"


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def train_losses(run_dir: Path, key: str = "loss") -> list[float]:
    return [float(r[key]) for r in read_metrics(run_dir) if r["split"] == "train"]


def train_args(model: str, corpus: Path, *extra, weights: Path | None = None,
               run: Path | None = None, preset: str = PRESET) -> list:
    """The arguments of `dub train MODEL --corpus CORPUS --preset PRESET [--weights W]
    [--run-dir RUN] EXTRA...`."""
    args = ["train", model, "--corpus", corpus, "--preset", preset]
    if weights is not None:
        args += ["--weights", weights]
    if run is not None:
        args += ["--run-dir", run]
    return [*args, *extra]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A corpus of 122 64-px crops from one real clip (made once per session)."""
    if not CLIP.is_file():
        pytest.skip("../shared/media is not present")
    from dubber.config import load_config
    from dubber.train.prepare import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    prepare([CLIP], out, load_config(PRESET), PrepareOptions(crop_size=64, min_frames=30))
    return out


@pytest.fixture(scope="session")
def tiny_weights(tiny_corpus, tmp_path_factory) -> Path:
    """A weights folder with unittest-preset Face-VQGAN, Pose-VQGAN and sync expert, each
    trained for a few steps on ``tiny_corpus`` (what the generator trainer needs)."""
    from dubber.config import load_config
    from dubber.train.train import train

    wdir = tmp_path_factory.mktemp("weights")
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config(PRESET)
    small = {"steps": 2, "batch_size": 4}
    for name, extra in (
        ("face-vqgan", {"val_images": 4}),
        ("pose-vqgan", {"val_images": 4}),
        ("sync-expert", {"val_windows": 4}),
    ):
        train(name, tiny_corpus, cfg, {**small, **extra}, weights_dir=wdir, run_dir=runs / name)
    return wdir
