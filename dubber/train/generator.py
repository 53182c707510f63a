"""``dub train generator``: the lip-sync generator in code space (DESIGN step 4).

A sample is a window of T consecutive frames (T = the expert's ``frames``). For each
frame: the Pose-VQGAN embedding of its masked crop, the Face-VQGAN embedding of a
reference frame of the same segment (one per window, as the render path keeps one per
track), and the 200 ms mel window centred on the frame. Loss (Wav2Lip's weighting):
``(1 - sync_weight) * L1(prediction, Face-VQGAN embedding of the frame)
+ sync_weight * BCE(expert(prediction of the T frames, 1 s of mel), in sync)``; the expert
is frozen. With ``sync_weight`` 0 the expert is optional: a first phase can train on the L1
term before the expert exists, and a ``--resume`` with the weight set continues with it.
With a generator whose dims have ``aperture_cue``, each frame also carries its lip aperture
(:mod:`dubber.train.apertures`): the decoder is given the true one (teacher forcing) and
``aperture_weight`` times the squared error of the one predicted from the mel joins the
loss. Validation: embedding L1 (from the predicted aperture, as when dubbing), the share of
codes that the prediction snaps to correctly, the expert's in-sync probability of predicted
and of real windows, and with the cue the correlation of predicted and true apertures and
the mouth L1 when told the true one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dubber.errors import WeightsError
from dubber.models.registry import KINDS, build_random, load_model
from dubber.models.syncnet import sync_probability
from dubber.train.apertures import corpus_apertures, corpus_mouths
from dubber.train.codes import FrozenCodes, corpus_codes
from dubber.train.frames import FrameIndex
from dubber.train.hparams import LoopConfig
from dubber.train.optim import adam
from dubber.train.trainer import Trainer
from dubber.train.corpus import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorTrainConfig(LoopConfig):
    """Hyper-parameters of the generator."""

    lr: float = 2e-4  # Adam
    batch_size: int = 4  # windows per step (times T frames through the generator)
    sync_weight: float = 0.03  # weight of the expert's sync loss (Wav2Lip: 0.03)
    sync_start: int = 0  # step from which the sync loss is on
    val_windows: int = 32  # held-back windows
    pose_jitter: int = 4  # train on the pose of a frame up to this many frames away (see
    # GeneratorWindows.batch); validation always uses the frame's own. 0: the frame's own
    mouth_weight: float = 4.0  # weight of the L1 on the code rows the Pose-VQGAN masks (the
    # mouth and jaw) against the rows above, which the pose input already shows: with 1 the
    # few mouth codes are a small share of the loss and the audio can be ignored
    aperture_weight: float = 0.2  # weight of the squared error of the predicted lip aperture
    # (generators with dims.aperture_cue; the decoder is given the true one in training)
    aperture_lr_scale: float = 10.0  # the aperture read-out of a cue_only generator (a linear
    # map of 41 band energies) learns at this times lr: at the network's lr it barely moves
    mel_augment: bool = True  # random gain, noise and masked mel bands on the training mel
    # windows: a few speakers' voices are easy to memorise and hard to generalise from


class GeneratorWindows:
    """Generator inputs and targets for T-frame windows of one split."""

    def __init__(
        self,
        segments: list[Segment],
        face: FrozenCodes,
        pose: FrozenCodes,
        frames: int,
        mel_steps: int,
        expert_steps: int,
        apertures: dict[str, np.ndarray] | None = None,
    ):
        self.segments, self.face, self.pose = segments, face, pose
        self.apertures = apertures
        self.frames, self.mel_steps, self.expert_steps = frames, mel_steps, expert_steps
        self.windows = FrameIndex(segments).windows(frames)

    def batch(
        self, ws: np.ndarray, gen: torch.Generator, pose_jitter: int = 0
    ) -> dict[str, torch.Tensor]:
        """Tensors for windows ``ws`` (B of them; M = B * T frames):

        pose, ref, target: (M, C, G, G) float32; target_codes: (M, G, G) int64;
        mel: (M, 80, mel_steps); window_mel: (B, 80, expert_steps); with apertures,
        aperture: (M,) float32, each frame's standardised lip aperture, or (M, 3): its
        standardised mouth parameters (``cue_dims`` 3).

        With ``pose_jitter`` k each frame takes the pose of a frame up to k frames away in its
        segment. The upper face of a few thousand frames tells the generator which frame it
        is looking at, and so its mouth, better than the audio does; a pose k frames off still
        places the head, while the mouth it would recall is a fifth of a second stale.
        """
        pose, ref, target, codes, mel, wmel, aps = [], [], [], [], [], [], []
        t = self.frames
        for w in ws.tolist():
            s, j = (int(v) for v in self.windows[w])
            seg = self.segments[s]
            fc = self.face.codes[seg.info.file]
            r = int(torch.randint(0, len(seg), (1,), generator=gen))
            at = np.arange(j, j + t)
            if pose_jitter:
                shift = torch.randint(-pose_jitter, pose_jitter + 1, (t,), generator=gen)
                at = np.clip(at + shift.numpy(), 0, len(seg) - 1)
            pose.append(self.pose.embed(self.pose.codes[seg.info.file][at]))
            ref.append(self.face.embed(fc[r])[None].expand(t, -1, -1, -1))
            target.append(self.face.embed(fc[j : j + t]))
            codes.append(torch.from_numpy(fc[j : j + t]))
            if self.apertures is not None:
                aps.append(torch.from_numpy(self.apertures[seg.info.file][j : j + t]))
            mel.append(
                torch.from_numpy(
                    np.stack([seg.mel_window(f, self.mel_steps) for f in range(j, j + t)])
                )
            )
            wmel.append(
                torch.from_numpy(
                    np.ascontiguousarray(seg.mel_window(j + (t - 1) / 2, self.expert_steps))
                )
            )
        out = {
            "pose": torch.cat(pose),
            "ref": torch.cat(ref),
            "target": torch.cat(target),
            "target_codes": torch.cat(codes),
            "mel": torch.cat(mel),
            "window_mel": torch.stack(wmel),
        }
        if aps:
            out["aperture"] = torch.cat(aps).float()
        return out


def augment_mel(mel: torch.Tensor, gen: torch.Generator, max_band: int = 10) -> torch.Tensor:
    """Training-time variation of log10-mel windows (B, n_mels, steps): a random gain per
    window (s.d. 0.5, i.e. 10 dB), noise (s.d. 0.2) and one band of up to ``max_band`` bins
    set to the window's mean; nothing falls below the silence floor. Silence may come out
    as a faint noise floor, as between the lines of a real dub track."""
    from dubber.media.audio import SILENCE_LOG_MEL

    b, n, _ = mel.shape
    out = mel + 0.5 * torch.randn(b, 1, 1, generator=gen) + 0.2 * torch.randn(mel.shape, generator=gen)
    start = torch.randint(0, n, (b,), generator=gen)
    width = torch.randint(0, max_band + 1, (b,), generator=gen)
    bins = torch.arange(n)[None, :]
    band = ((bins >= start[:, None]) & (bins < (start + width)[:, None]))[:, :, None]
    out = torch.where(band, out.mean(dim=(1, 2), keepdim=True), out)
    return out.clamp_min(SILENCE_LOG_MEL)


def snap(pred: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Nearest codebook index of each prediction vector: (M, C, G, G) -> (M, G, G)."""
    flat = pred.float().movedim(1, -1).reshape(-1, pred.shape[1])
    d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ table.t() + table.pow(2).sum(1)
    return d.argmin(1).view(pred.shape[0], *pred.shape[2:])


class GeneratorTrainer(Trainer):
    kind = "generator"
    best_figure = ("l1", "min")

    def __init__(self, cfg, hp: GeneratorTrainConfig, corpus, device, weights_dir):
        super().__init__(cfg, hp, corpus, device, weights_dir)
        self.dims = cfg.models.generator
        ed = cfg.models.sync_expert
        self.face = corpus_codes(corpus, "face_vqgan", cfg, weights_dir, device, "the generator")
        self.pose = corpus_codes(corpus, "pose_vqgan", cfg, weights_dir, device, "the generator")
        name = cfg.models.weights.sync_expert or f"sync-expert-{cfg.preset}"
        try:
            self.expert = load_model("sync_expert", name, ed, weights_dir, cfg.preset)
            self.expert.eval().requires_grad_(False).to(device)
        except WeightsError as exc:
            if hp.sync_weight > 0:
                raise WeightsError(
                    f"the generator needs a trained {KINDS['sync_expert'].title} first "
                    f"(`dub train sync-expert --corpus CORPUS`), or --set sync_weight=0 "
                    f"for the L1 term alone: {exc}"
                ) from None
            # L1 alone (a first phase; resume later with the expert's sync loss on).
            log.warning("no sync expert (%s): training on the L1 term alone", name)
            self.expert = None
        self.net = build_random(self.kind, self.dims, hp.seed).train().to(device)
        faster = None
        if self.dims.cue_only:
            faster = {hp.aperture_lr_scale: list(self.net.aperture_head.parameters())}
        self.opt = adam(list(self.net.parameters()), hp.lr, faster)
        self.table = self.face.table.to(device)
        self.apertures = None
        if self.dims.aperture_cue:  # the cue: lip aperture (N,) or mouth parameters (N, 3)
            self.apertures = (corpus_mouths(corpus) if self.dims.cue_dims == 3
                              else corpus_apertures(corpus))
        self.train_windows = GeneratorWindows(
            corpus.segments("train"),
            self.face,
            self.pose,
            ed.frames,
            self.dims.mel_steps,
            ed.mel_steps,
            self.apertures,
        )
        self._val = None

    def modules(self):
        return {"model": self.net}

    def optimizers(self):
        return {"model": self.opt}

    def _forward(
        self, b: dict[str, torch.Tensor], cued: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prediction (M, C, G, G), L1, expert's in-sync probability per window (B,)).

        ``cued``: draw the true aperture of ``b`` (training), else the one the generator
        predicts from the mel (dubbing)."""
        dev = self.device
        ap = b["aperture"].to(dev) if cued and "aperture" in b else None
        pred = self.net(b["pose"].to(dev), b["ref"].to(dev), b["mel"].to(dev), ap)
        l1 = (pred.float() - b["target"].to(dev)).abs().mean()
        n = b["window_mel"].shape[0]
        if self.expert is None:
            return pred, l1, None
        v, a = self.expert(pred.view(n, -1, *pred.shape[1:]), b["window_mel"].to(dev))
        return pred, l1, sync_probability(v, a)

    def train_step(self, step, gen):
        hp = self.hp
        ws = torch.randint(
            0, len(self.train_windows.windows), (hp.batch_size,), generator=gen
        ).numpy()
        b = self.train_windows.batch(ws, gen, hp.pose_jitter)
        if hp.mel_augment:
            b["mel"] = augment_mel(b["mel"], gen)
        w = hp.sync_weight if step >= hp.sync_start else 0.0
        with self.autocast():
            pred, l1, p = self._forward(b, cued=True)
            out = {"l1": float(l1.detach())}
            loss = l1
            if hp.mouth_weight != 1.0:
                loss = self._weighted_l1(pred, b["target"].to(self.device))
                out["l1_weighted"] = float(loss.detach())
            if self.apertures is not None:
                said = self.net.aperture(b["mel"].to(self.device)).float()
                ap = (said - b["aperture"].to(self.device)).pow(2).mean()
                loss = loss + hp.aperture_weight * ap
                out["aperture_mse"] = float(ap.detach())
            if p is not None:
                sync = F.binary_cross_entropy(p, torch.ones_like(p))
                loss = (1 - w) * loss + w * sync
                out["sync"] = float(sync.detach())
        self.backward_step(loss, self.opt)
        return {"loss": float(loss.detach()), **out}

    def mouth_row(self) -> int:
        """First code row the Pose-VQGAN's mask covers."""
        return int(self.cfg.models.pose_mask_from * self.dims.grid)

    def _weighted_l1(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 with the mouth rows weighted by ``mouth_weight`` (normalised to mean weight 1)."""
        g = pred.shape[-2]
        w = torch.ones(g, 1, device=pred.device)
        w[self.mouth_row():] = self.hp.mouth_weight
        w = w / w.mean()
        return ((pred.float() - target).abs() * w).mean()

    def validate(self):
        if self._val is None:
            vw = GeneratorWindows(
                self.val_segments(),
                self.face,
                self.pose,
                self.train_windows.frames,
                self.dims.mel_steps,
                self.train_windows.expert_steps,
                self.apertures,
            )
            n = min(self.hp.val_windows, len(vw.windows))
            self._val = (vw, np.linspace(0, len(vw.windows) - 1, n).round().astype(np.int64))
        vw, ws = self._val
        gen = torch.Generator().manual_seed(54321)
        l1s, mouth, accs, p_gen, p_real, a_true, a_pred, mouth_cued = [], [], [], [], [], [], [], []
        for a in range(0, len(ws), self.hp.batch_size):
            b = vw.batch(ws[a : a + self.hp.batch_size], gen)
            n = b["window_mel"].shape[0]
            with self.autocast():
                pred, l1, p = self._forward(b)
            l1s.append(float(l1.detach()) * n)
            r = self.mouth_row()
            mouth.append(float((pred.float() - b["target"].to(self.device))[..., r:, :].abs().mean()) * n)
            if self.apertures is not None:
                a_true.append(b["aperture"])
                a_pred.append(self.net.aperture(b["mel"].to(self.device)).float().cpu())
                with self.autocast():  # the mouth it draws when told the true opening
                    cued = self._forward(b, cued=True)[0].float()
                d = (cued - b["target"].to(self.device))[..., r:, :]
                mouth_cued.append(float(d.abs().mean()) * n)
            accs.append((snap(pred, self.table).cpu() == b["target_codes"]).float().mean() * n)
            if self.expert is not None:
                with self.autocast():
                    v, s = self.expert(
                        b["target"].to(self.device).view(n, -1, *pred.shape[1:]),
                        b["window_mel"].to(self.device),
                    )
                p_gen.append(float(p.float().sum()))
                p_real.append(float(sync_probability(v, s).float().sum()))
        n = len(ws)
        out = {"l1": sum(l1s) / n, "l1_mouth": sum(mouth) / n, "code_acc": float(sum(accs)) / n}
        if a_true:  # how well the speech alone tells the mouth opening of unseen frames
            t, q = torch.cat(a_true), torch.cat(a_pred)
            out["aperture_mse"] = float((q - t).pow(2).mean())
            t, q = t.reshape(len(t), -1), q.reshape(len(q), -1)  # column 0: the opening
            for k, name in enumerate(("aperture_corr", "width_corr", "rounding_corr")[:t.shape[1]]):
                pair = torch.stack([q[:, k], t[:, k]])
                out[name] = float(torch.corrcoef(pair)[0, 1].nan_to_num())
            out["l1_mouth_cued"] = sum(mouth_cued) / n
        if self.expert is not None:
            out.update(p_sync_generated=sum(p_gen) / n, p_sync_real=sum(p_real) / n)
        return out
