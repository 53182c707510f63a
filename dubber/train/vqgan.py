"""``dub train face-vqgan`` / ``pose-vqgan``: the VQGAN losses of Esser et al. (taming).

Loss = L1 reconstruction + codebook + beta * commitment (taming's VectorQuantizer) +
adaptive-weighted hinge patch-GAN after ``disc_start`` steps (taming's NLayerDiscriminator).
taming's perceptual (LPIPS) term needs VGG weights that would be downloaded, so it is left
out; ``perceptual_weight`` is kept at 0 and there is no local replacement. The Pose-VQGAN
is the same model trained on the lower-half-masked crops and is measured on those.

Codes that no encoder output has picked for ``dead_code_steps`` steps are moved onto
random encoder outputs of the current batch (codebook restart): with a small corpus and
few steps the plain quantizer otherwise collapses onto a handful of codes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dubber.models.registry import build_random, load_model, read_manifest
from dubber.train.hparams import LoopConfig
from dubber.train.images import psnr, to_images
from dubber.train.optim import adam
from dubber.train.trainer import Trainer

log = logging.getLogger(__name__)

_VQ_KINDS = ("face_vqgan", "pose_vqgan")


@dataclass(frozen=True)
class VQGANTrainConfig(LoopConfig):
    """Hyper-parameters of the VQGAN trainers."""

    lr: float = 2e-4  # Adam (betas 0.5, 0.9) for the VQGAN and the discriminator
    rec_weight: float = 1.0  # L1 reconstruction
    codebook_weight: float = 1.0  # codebook + commitment (beta = 0.25 inside the quantizer)
    disc_start: int = 2000  # step from which the patch GAN is on (taming: after warm-up)
    disc_weight: float = 0.8  # GAN weight, times the adaptive factor (taming's default)
    disc_layers: int = 3  # NLayerDiscriminator depth
    disc_channels: int = 64  # NLayerDiscriminator width
    dead_code_steps: int = 50  # restart codes unused this many steps (0 = never)
    flip: bool = True  # random horizontal flips
    val_images: int = 64  # validation crops (spread evenly over the val split)
    init_from: str = ""  # start from these weights (a manifest name of the same dims), e.g.
    # the Face-VQGAN for the Pose-VQGAN: only the lower half of its input is new to it


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def adaptive_weight(rec: torch.Tensor, g: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """taming's balance: |d rec / d last| / |d g / d last|, clamped to [0, 1e4]."""
    rg = torch.autograd.grad(rec, last, retain_graph=True)[0]
    gg = torch.autograd.grad(g, last, retain_graph=True)[0]
    return (rg.norm() / (gg.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def make_discriminator(layers: int, channels: int) -> nn.Module:
    from taming.modules.discriminator.model import NLayerDiscriminator, weights_init

    d = NLayerDiscriminator(input_nc=3, ndf=channels, n_layers=layers)
    d.apply(weights_init)
    return d


class VQGANTrainer(Trainer):
    """Face-VQGAN (``kind="face_vqgan"``) or Pose-VQGAN (``kind="pose_vqgan"``)."""

    best_figure = ("psnr", "max")

    def __init__(self, cfg, hp: VQGANTrainConfig, corpus, device, weights_dir, kind: str):
        super().__init__(cfg, hp, corpus, device, weights_dir)
        self.kind = kind
        self.masked = kind == "pose_vqgan"
        self.dims = getattr(cfg.models, kind)
        if hp.init_from:
            # Face- and Pose-VQGAN are one class: either kind's weights can start the other.
            src = {e.name: e.model for e in read_manifest(weights_dir).values()}
            src_kind = src.get(hp.init_from, kind) if src.get(hp.init_from) in _VQ_KINDS else kind
            self.vq = load_model(src_kind, hp.init_from, self.dims, weights_dir, cfg.preset).train()
            log.info("%s starts from the weights %s", kind, hp.init_from)
        else:
            self.vq = build_random(kind, self.dims, hp.seed).train()
        self.vq.requires_grad_(True).to(device)
        torch.manual_seed(hp.seed + 1)
        self.disc = make_discriminator(hp.disc_layers, hp.disc_channels).to(device)
        self.opt_g = adam(self.vq.parameters(), hp.lr)
        self.opt_d = adam(self.disc.parameters(), hp.lr)
        self.frames = None
        self.unused = torch.zeros(self.dims.n_embed, dtype=torch.long)

    def modules(self):
        return {"model": self.vq, "disc": self.disc}

    def optimizers(self):
        return {"vq": self.opt_g, "disc": self.opt_d}

    def _train_frames(self):
        if self.frames is None:
            from dubber.train.frames import FrameIndex

            self.frames = FrameIndex(self.corpus.segments("train"))
        return self.frames

    def batch(self, gen: torch.Generator) -> torch.Tensor:
        idx = self._train_frames()
        flat = torch.randint(0, len(idx), (self.hp.batch_size,), generator=gen).numpy()
        flip = (torch.rand(self.hp.batch_size, generator=gen) < 0.5) if self.hp.flip else None
        x = to_images(idx.crops(flat, self.masked), self.dims.resolution, flip)
        return x.to(self.device)

    def forward(self, x: torch.Tensor):
        """(reconstruction, quantizer loss, code indices (B*G*G,), pre-quantization z)."""
        z = self.vq.quant_conv(self.vq.encoder(x))
        zq, qloss, (_, _, idx) = self.vq.quantize(z.float())
        rec = self.vq.decoder(self.vq.post_quant_conv(zq))
        return rec, qloss, idx.view(-1), z

    def train_step(self, step, gen):
        hp = self.hp
        x = self.batch(gen)
        gan_on = hp.disc_start >= 0 and step >= hp.disc_start and hp.disc_weight > 0
        with self.autocast():
            rec, qloss, idx, z = self.forward(x)
            rec_loss = (x - rec.float()).abs().mean()
            loss = hp.rec_weight * rec_loss + hp.codebook_weight * qloss
            out = {"rec_l1": float(rec_loss.detach()), "codebook": float(qloss.detach())}
            if gan_on:
                g_loss = -self.disc(rec).float().mean()
                last = self.vq.decoder.conv_out.weight
                w = adaptive_weight(hp.rec_weight * rec_loss, g_loss, last) * hp.disc_weight
                loss = loss + w * g_loss
                out.update(g_loss=float(g_loss.detach()), d_weight=float(w.detach()))
        self.backward_step(loss, self.opt_g)
        if gan_on:
            with self.autocast():
                d_loss = hinge_d_loss(self.disc(x).float(), self.disc(rec.detach()).float())
            self.backward_step(d_loss, self.opt_d)
            out["d_loss"] = float(d_loss.detach())
        self._restart_dead_codes(idx, z, gen)
        out["loss"] = float(loss.detach())
        return out

    @torch.no_grad()
    def _restart_dead_codes(self, idx: torch.Tensor, z: torch.Tensor, gen: torch.Generator) -> None:
        if self.hp.dead_code_steps <= 0:
            return
        used = torch.bincount(idx.cpu(), minlength=self.dims.n_embed) > 0
        self.unused = torch.where(used, 0, self.unused + 1)
        dead = (self.unused >= self.hp.dead_code_steps).nonzero().flatten()
        if len(dead) == 0:
            return
        flat = z.detach().float().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        pick = torch.randint(0, len(flat), (len(dead),), generator=gen)
        noise = torch.randn(len(dead), flat.shape[1], generator=gen) * 0.01
        self.vq.quantize.embedding.weight.data[dead.to(self.device)] = flat[
            pick.to(flat.device)
        ] + noise.to(flat.device)
        self.unused[dead] = 0
        log.debug("restarted %d dead codes", len(dead))

    def validate(self):
        from dubber.train.frames import FrameIndex

        idx = FrameIndex(self.val_segments())
        n = min(self.hp.val_images, len(idx))
        flat = np.linspace(0, len(idx) - 1, n).round().astype(np.int64)
        ps, l1s, codes = [], [], []
        for a in range(0, n, self.hp.batch_size):
            x = to_images(
                idx.crops(flat[a : a + self.hp.batch_size], self.masked), self.dims.resolution
            ).to(self.device)
            with self.autocast():
                rec, _, ci, _ = self.forward(x)
            rec = rec.float().clamp(-1, 1)
            ps.append(psnr(rec, x))
            l1s.append((rec - x).abs().flatten(1).mean(1))
            codes.append(ci.cpu())
        used = int(torch.unique(torch.cat(codes)).numel())
        return {
            "psnr": float(torch.cat(ps).mean()),
            "l1": float(torch.cat(l1s).mean()),
            "codes_used": used,
        }
