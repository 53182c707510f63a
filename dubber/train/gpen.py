"""``dub train gpen``: GPEN's restoration losses on synthetically degraded crops.

GPEN (Yang et al., CVPR 2021) is trained on pairs (degraded, clean): the degradation is
blur (Gaussian, random sigma), down-sampling by a random factor and back, and Gaussian
noise, all random per image. Losses: L1 content loss, a non-saturating adversarial loss
from a patch discriminator, and a feature-matching loss on the discriminator's features.
GPEN's identity loss needs a pretrained face-recognition network, which would have to be
downloaded, so it is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dubber.models.registry import build_random
from dubber.train.frames import FrameIndex
from dubber.train.hparams import LoopConfig
from dubber.train.images import psnr, to_images
from dubber.train.optim import adam
from dubber.train.trainer import Trainer
from dubber.train.vqgan import make_discriminator


@dataclass(frozen=True)
class GPENTrainConfig(LoopConfig):
    """Hyper-parameters of GPEN."""

    lr: float = 2e-4  # Adam for GPEN and the discriminator
    batch_size: int = 4
    l1_weight: float = 1.0  # content loss
    adv_weight: float = 0.05  # non-saturating GAN loss
    fm_weight: float = 0.1  # discriminator feature matching
    max_blur: float = 3.0  # Gaussian blur sigma up to this (pixels at GPEN size)
    max_down: float = 4.0  # down-sampling factor up to this
    max_noise: float = 0.06  # noise std up to this (images in [-1, 1])
    val_images: int = 32


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (B,), separable, reflect-padded."""
    out = []
    for img, s in zip(x, sigma.tolist()):
        if s < 0.3:
            out.append(img)
            continue
        r = max(1, int(3 * s))
        t = torch.arange(-r, r + 1, dtype=x.dtype)
        k = torch.exp(-0.5 * (t / s) ** 2)
        k = (k / k.sum()).to(x.device)
        im = F.pad(img[None], (r, r, r, r), mode="reflect")
        im = F.conv2d(im, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        im = F.conv2d(im, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
        out.append(im[0])
    return torch.stack(out)


def degrade(x: torch.Tensor, hp: GPENTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Blur, down/up-sample and noise, random per image. Same shape, in [-1, 1]."""
    b, _, s, _ = x.shape
    sigma = torch.rand(b, generator=gen) * hp.max_blur
    down = 1.0 + torch.rand(b, generator=gen) * (hp.max_down - 1.0)
    noise = torch.rand(b, generator=gen) * hp.max_noise
    y = gaussian_blur(x, sigma)
    out = []
    for img, f in zip(y, down.tolist()):
        small = max(8, int(round(s / f)))
        img = F.interpolate(
            img[None], size=(small, small), mode="bilinear", antialias=True, align_corners=False
        )
        out.append(F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False)[0])
    y = torch.stack(out)
    y = y + torch.randn(y.shape, generator=gen).to(y.device) * noise.view(-1, 1, 1, 1).to(y.device)
    return y.clamp(-1.0, 1.0)


def disc_features(disc, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The patch discriminator's logits and its intermediate activations."""
    feats = []
    h = x
    for layer in disc.main:
        h = layer(h)
        if isinstance(layer, torch.nn.LeakyReLU):
            feats.append(h)
    return h, feats


class GPENTrainer(Trainer):
    kind = "gpen"

    def __init__(self, cfg, hp: GPENTrainConfig, corpus, device, weights_dir):
        super().__init__(cfg, hp, corpus, device, weights_dir)
        self.dims = cfg.models.gpen
        self.net = build_random(self.kind, self.dims, hp.seed).train().to(device)
        torch.manual_seed(hp.seed + 1)
        self.disc = make_discriminator(3, 32).to(device)
        self.opt_g = adam(self.net.parameters(), hp.lr)
        self.opt_d = adam(self.disc.parameters(), hp.lr)
        self.frames = FrameIndex(corpus.segments("train"))

    def modules(self):
        return {"model": self.net, "disc": self.disc}

    def optimizers(self):
        return {"gpen": self.opt_g, "disc": self.opt_d}

    def train_step(self, step, gen):
        hp = self.hp
        flat = torch.randint(0, len(self.frames), (hp.batch_size,), generator=gen).numpy()
        clean = to_images(self.frames.crops(flat), self.dims.size).to(self.device)
        bad = degrade(clean, hp, gen)
        with self.autocast():
            out = self.net(bad)
            l1 = (out.float() - clean).abs().mean()
            logit_f, feat_f = disc_features(self.disc, out)
            with torch.no_grad():
                _, feat_r = disc_features(self.disc, clean)
            adv = F.softplus(-logit_f.float()).mean()
            fm = sum((a.float() - b.float()).abs().mean() for a, b in zip(feat_f, feat_r)) / max(
                1, len(feat_f)
            )
            loss = hp.l1_weight * l1 + hp.adv_weight * adv + hp.fm_weight * fm
        self.backward_step(loss, self.opt_g)
        with self.autocast():
            d_loss = (
                F.softplus(-self.disc(clean).float()).mean()
                + F.softplus(self.disc(out.detach()).float()).mean()
            )
        self.backward_step(d_loss, self.opt_d)
        return {
            "loss": float(loss.detach()),
            "l1": float(l1.detach()),
            "adv": float(adv.detach()),
            "fm": float(fm.detach()),
            "d_loss": float(d_loss.detach()),
        }

    def validate(self):
        idx = FrameIndex(self.val_segments())
        n = min(self.hp.val_images, len(idx))
        flat = np.linspace(0, len(idx) - 1, n).round().astype(np.int64)
        gen = torch.Generator().manual_seed(777)
        restored, degraded = [], []
        for a in range(0, n, self.hp.batch_size):
            clean = to_images(idx.crops(flat[a : a + self.hp.batch_size]), self.dims.size).to(
                self.device
            )
            bad = degrade(clean, self.hp, gen)
            with self.autocast():
                out = self.net(bad).float()
            restored.append(psnr(out, clean))
            degraded.append(psnr(bad, clean))
        return {
            "psnr": float(torch.cat(restored).mean()),
            "psnr_degraded": float(torch.cat(degraded).mean()),
        }
