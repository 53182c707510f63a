"""Learnability benchmark: how well the trained weights of a preset do on held-back data.

    python -m dubber.bench learn --corpus CORPUS [--preset fast] [--weights DIR] [--json [F]]

Measures, on the corpus' val split (videos never seen in training; the train split when
there is none, and then it says so):

- Face-VQGAN reconstruction PSNR (dB) and L1 of the val crops; Pose-VQGAN the same on the
  masked crops;
- the sync expert's pair accuracy on held-back T-frame windows, each once in sync and once
  shifted by at least ``--min-shift`` frames (the paper: 91.2% at T = 25);
- the generator's val L1 to the true Face-VQGAN embeddings (and, as the floor to beat, the
  L1 of simply repeating the reference frame), the share of its codes that are right after
  snapping to the codebook, the expert's in-sync probability of its windows (against that
  of the real frames), and how much the audio moves the decoded face: the mean difference,
  in 0..255 levels, between faces generated from the real mel and from silence (and from
  other moments of speech), in the lower (mouth) and upper half of the crop;
- for a generator with the aperture cue: how well the opening it predicts from the speech
  follows the true one (correlation, standardised lip apertures), how much the cue moves
  the mouth (levels between told shut, -1, and told open, +2), and the face mesh run on
  the faces it draws: their lip aperture against the true one when told the true opening
  (does it draw what it is told) and when left to the speech (what a dub gets: the
  predicted opening times the preset's ``aperture_gain``), with the Face-VQGAN's own
  reconstructions of the real frames as the ceiling.

Prints one line per figure, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np
import torch

from dubber.bench.report import Report, add_json_flag

log = logging.getLogger(__name__)


def run(
    corpus_dir: str,
    preset: str = "fast",
    weights_dir: str | None = None,
    min_shift: int = 5,
    images: int = 256,
    windows: int = 512,
) -> dict:
    """Every figure of the trained weights of ``preset`` on ``corpus_dir``'s val split."""
    from dubber.config import load_config
    from dubber.errors import WeightsError
    from dubber.models.registry import load_model, resolve_weights_dir
    from dubber.train.codes import corpus_codes, load_frozen_vqgan
    from dubber.train.frames import FrameIndex
    from dubber.train.images import psnr, to_images
    from dubber.train.corpus import Corpus
    from dubber.train.generator import GeneratorTrainConfig, GeneratorTrainer
    from dubber.train.syncnet import SyncPairs, sync_accuracy
    from dubber.train.train import weight_name

    cfg = load_config(preset, {"runtime": {"device": "cpu"}})
    corpus = Corpus(corpus_dir)
    wdir = resolve_weights_dir(weights_dir)
    dev = torch.device("cpu")
    split = "val" if corpus.segments("val") else "train"
    segs = corpus.segments(split)
    out: dict = {
        "preset": preset,
        "corpus": str(corpus.folder),
        "split": split,
        "val_frames": sum(len(s) for s in segs),
    }
    # 1. VQGAN reconstruction.
    idx = FrameIndex(segs)
    flat = np.linspace(0, len(idx) - 1, min(images, len(idx))).round().astype(np.int64)
    for kind in ("face_vqgan", "pose_vqgan"):
        try:
            model, _ = load_frozen_vqgan(kind, cfg, wdir, "the benchmark")
        except WeightsError as exc:
            log.warning("%s", exc)
            continue
        ps, l1 = [], []
        with torch.no_grad():
            for a in range(0, len(flat), 16):
                x = to_images(
                    idx.crops(flat[a : a + 16], kind == "pose_vqgan"), model.dims.resolution
                )
                rec = model.decode(model.encode(x)[1])
                ps.append(psnr(rec, x))
                l1.append((rec - x).abs().flatten(1).mean(1))
        out[f"{kind}_psnr"] = round(float(torch.cat(ps).mean()), 2)
        out[f"{kind}_l1"] = round(float(torch.cat(l1).mean()), 4)
        out[f"{kind}_images"] = len(flat)
    # 2. Sync expert accuracy on held-back windows.
    try:
        face = corpus_codes(corpus, "face_vqgan", cfg, wdir, dev, "the benchmark")
        ed = cfg.models.sync_expert
        expert = load_model("sync_expert", weight_name("sync-expert", cfg), ed, wdir, preset)
        pairs = SyncPairs(segs, face, ed.frames, ed.mel_steps, min_shift)
        n = min(windows, len(pairs.windows))
        ws = np.linspace(0, len(pairs.windows) - 1, n).round().astype(np.int64)
        with torch.no_grad():
            acc = sync_accuracy(
                expert.eval(),
                pairs,
                np.repeat(ws, 2),
                np.tile([True, False], n),
                32,
                dev,
                lambda: torch.autocast("cpu", enabled=False),
            )
        out.update({f"sync_{k}": round(v, 4) for k, v in acc.items()})
        out["sync_frames_T"] = ed.frames
        out["sync_min_shift_frames"] = min_shift
    except WeightsError as exc:
        log.warning("%s", exc)
    # 3. Generator val L1.
    try:
        # No sync loss: the figures need no expert (one that is there is still measured).
        hp = GeneratorTrainConfig(val_windows=min(windows, 64), batch_size=4, sync_weight=0.0)
        trainer = GeneratorTrainer(cfg, hp, corpus, dev, wdir)
        trainer.net = load_model(
            "generator", weight_name("generator", cfg), cfg.models.generator, wdir, preset
        ).eval()
        with torch.no_grad():
            g = trainer.validate()
        out.update({f"generator_{k}": round(v, 4) for k, v in g.items()})
        # The floor a generator must beat: the reference frame's own embedding as the guess.
        out["generator_l1_copy_reference"] = round(_copy_reference_l1(trainer), 4)
        vq, _ = load_frozen_vqgan("face_vqgan", cfg, wdir, "the benchmark")
        out.update(_audio_effect(trainer, vq))
        if trainer.net.dims.aperture_cue:
            out.update(_cue_figures(trainer, vq))
    except WeightsError as exc:
        log.warning("%s", exc)
    return out


def _audio_effect(trainer, vq, windows: int = 8) -> dict[str, float]:
    """How much the audio moves the picture: decoded faces generated from the real mel
    against the same inputs with silence, and against the mel of other moments of speech
    (the batch's mel windows in reversed order), mean absolute difference in 0..255 levels,
    in the lower half of the crop (mouth) and in the upper half (should stay put)."""
    from dubber.media.audio import SILENCE_LOG_MEL

    vw, ws = trainer._val
    gen = torch.Generator().manual_seed(54321)
    b = vw.batch(ws[:: max(1, len(ws) // windows)][:windows], gen)
    mels = {"": torch.full_like(b["mel"], SILENCE_LOG_MEL), "_other_speech": b["mel"].flip(0)}
    with torch.no_grad():
        def face(mel):
            return vq.decode(vq.quantize_embeddings(trainer.net(b["pose"], b["ref"], mel))[1])

        real = face(b["mel"])
        out = {}
        for name, mel in mels.items():
            diff = (real - face(mel)).abs() * 127.5
            h = diff.shape[-2] // 2
            out[f"generator_audio_effect{name}_lower"] = round(float(diff[..., h:, :].mean()), 3)
            out[f"generator_audio_effect{name}_upper"] = round(float(diff[..., :h, :].mean()), 3)
    return out


def _cue_figures(trainer, vq, windows: int = 8) -> dict[str, float]:
    """The aperture cue on val windows (see the module docstring)."""
    from dubber.stages.generate import opening_from
    from dubber.train.apertures import mesh_apertures

    vw, ws = trainer._val
    gen = torch.Generator().manual_seed(54321)
    b = vw.batch(ws[:: max(1, len(ws) // windows)][:windows], gen)
    net, true = trainer.net, b["aperture"]
    gain = trainer.cfg.models.aperture_gain
    t = vw.frames

    def faces(aperture=None):
        with torch.no_grad():
            pred = net(b["pose"], b["ref"], b["mel"], aperture)
            return vq.decode(vq.quantize_embeddings(pred)[1])

    def mesh(images):  # one tracking run per window
        u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        return np.concatenate([mesh_apertures(u8[a : a + t]) for a in range(0, len(u8), t)])

    def corr(a, b):
        ok = np.isfinite(a) & np.isfinite(b)
        return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3) if ok.sum() > 2 else float("nan")

    with torch.no_grad():
        said = net.aperture(b["mel"])
        real = vq.decode(b["target"])

    def opening(value):  # a cue of this opening (width and rounding at their usual)
        cue = torch.zeros_like(true)
        (cue if cue.dim() == 1 else cue[:, 0]).fill_(value)
        return cue

    shut, wide = faces(opening(-1.0)), faces(opening(2.0))
    h = shut.shape[-2] // 2
    # with cue_dims 3 the figures are of the opening (column 0); dubbing tells the driver's
    # cue, so the read-out's guess is drawn as it is (the gain is for the 1-d read-out)
    tn = true.numpy().reshape(len(true), -1)[:, 0]
    guess = opening_from(said, gain) if said.dim() == 1 else said
    return {
        "generator_aperture_from_speech_corr": corr(said.numpy().reshape(len(said), -1)[:, 0], tn),
        "generator_cue_effect_lower": round(float((wide - shut)[..., h:, :].abs().mean()) * 127.5, 3),
        "generator_mesh_told_true_corr": corr(mesh(faces(true)), tn),
        "generator_mesh_from_speech_corr": corr(mesh(faces(guess)), tn),
        "generator_mesh_vqgan_reconstruction_corr": corr(mesh(real), tn),
    }


def _copy_reference_l1(trainer) -> float:
    """L1 of predicting each frame by its window's reference embedding (no mouth motion)."""
    vw, ws = trainer._val
    gen = torch.Generator().manual_seed(54321)
    total = 0.0
    for a in range(0, len(ws), 4):
        b = vw.batch(ws[a : a + 4], gen)
        total += float((b["ref"] - b["target"]).abs().mean()) * len(ws[a : a + 4])
    return total / len(ws)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dubber.bench learn",
                                description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--preset", default="fast")
    p.add_argument("--weights", default=None)
    p.add_argument("--min-shift", type=int, default=5)
    add_json_flag(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    from dubber.errors import DubberError

    try:
        figures = run(args.corpus, args.preset, args.weights, args.min_shift)
    except DubberError as exc:
        print(f"bench learn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    report = Report("learn", args.json)
    for k, v in figures.items():
        report.figure(k, v)
    report.close()
    return 0
