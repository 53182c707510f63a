"""``dub train sync-expert``: the lip-sync expert in Face-VQGAN code space (DESIGN step 5).

A sample is T consecutive frames' Face-VQGAN embeddings (T = ``sync_expert.frames``, 25 in
the paper) and one second of mel. Half the samples are in sync (the mel centred on the
window), half are shifted: the mel of the same segment moved by at least ``min_shift``
frames (another segment's when this one is too short). Loss: BCE on the cosine
similarity of the two ReLU'd outputs (:func:`dubber.models.syncnet.sync_probability`).
Validation: pair accuracy (threshold 0.5) on held-back windows of the val videos, one
in-sync and one shifted pair per window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dubber.models.registry import build_random
from dubber.models.syncnet import sync_probability
from dubber.train.codes import FrozenCodes, corpus_codes
from dubber.train.frames import FrameIndex
from dubber.train.hparams import LoopConfig
from dubber.train.optim import adam
from dubber.train.trainer import Trainer
from dubber.train.corpus import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncTrainConfig(LoopConfig):
    """Hyper-parameters of the sync expert."""

    lr: float = 1e-4  # Adam
    batch_size: int = 32  # pairs per step, half in sync
    min_shift: int = 5  # out-of-sync pairs are shifted by at least this many frames (0.2 s)
    val_windows: int = 256  # held-back windows (each gives one in-sync and one shifted pair)


def shifted_start(
    n: int, start: int, frames: int, min_shift: int, gen: torch.Generator
) -> int | None:
    """A window start in a segment of ``n`` frames at least ``min_shift`` from ``start``,
    uniformly among those possible; None when there is none."""
    choices = [j for j in range(0, n - frames + 1) if abs(j - start) >= min_shift]
    if not choices:
        return None
    return choices[int(torch.randint(0, len(choices), (1,), generator=gen))]


class SyncPairs:
    """In-sync and shifted (embeddings, mel) pairs from one split."""

    def __init__(
        self,
        segments: list[Segment],
        codes: FrozenCodes,
        frames: int,
        mel_steps: int,
        min_shift: int,
    ):
        self.segments, self.codes = segments, codes
        self.frames, self.mel_steps, self.min_shift = frames, mel_steps, min_shift
        self.index = FrameIndex(segments)
        self.windows = self.index.windows(frames)

    def pair(
        self, w: int, in_sync: bool, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings (T, C, G, G), mel (80, steps)) of window ``w``."""
        s, j = (int(v) for v in self.windows[w])
        seg = self.segments[s]
        emb = self.codes.embed(self.codes.codes[seg.info.file][j : j + self.frames])
        audio_seg, a = seg, j
        if not in_sync:
            a = shifted_start(len(seg), j, self.frames, self.min_shift, gen)
            if a is None:  # too short: another window of another segment
                others = np.flatnonzero(self.windows[:, 0] != s)
                pick = (
                    self.windows[others[int(torch.randint(0, len(others), (1,), generator=gen))]]
                    if len(others)
                    else self.windows[w]
                )
                audio_seg, a = self.segments[int(pick[0])], int(pick[1])
        mel = audio_seg.mel_window(a + (self.frames - 1) / 2, self.mel_steps)
        return emb, torch.from_numpy(np.ascontiguousarray(mel))

    def batch(self, ws: np.ndarray, labels: np.ndarray, gen: torch.Generator):
        embs, mels = zip(*(self.pair(int(w), bool(y), gen) for w, y in zip(ws, labels)))
        return torch.stack(embs), torch.stack(mels), torch.from_numpy(labels.astype(np.float32))


def bce_sync_loss(video: torch.Tensor, speech: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE of the cosine-similarity probability against 1 (in sync) / 0 (shifted)."""
    return F.binary_cross_entropy(sync_probability(video, speech), labels)


class SyncTrainer(Trainer):
    kind = "sync_expert"
    best_figure = ("accuracy", "max")

    def __init__(self, cfg, hp: SyncTrainConfig, corpus, device, weights_dir):
        super().__init__(cfg, hp, corpus, device, weights_dir)
        self.dims = cfg.models.sync_expert
        self.codes = corpus_codes(corpus, "face_vqgan", cfg, weights_dir, device, "the sync expert")
        self.net = build_random(self.kind, self.dims, hp.seed).train().to(device)
        self.opt = adam(self.net.parameters(), hp.lr)
        self.train_pairs = SyncPairs(
            corpus.segments("train"),
            self.codes,
            self.dims.frames,
            self.dims.mel_steps,
            hp.min_shift,
        )
        self._val = None

    def modules(self):
        return {"model": self.net}

    def optimizers(self):
        return {"model": self.opt}

    def train_step(self, step, gen):
        b = self.hp.batch_size
        ws = torch.randint(0, len(self.train_pairs.windows), (b,), generator=gen).numpy()
        labels = (torch.arange(b) % 2 == 0).numpy()
        emb, mel, y = self.train_pairs.batch(ws, labels, gen)
        with self.autocast():
            v, a = self.net(emb.to(self.device), mel.to(self.device))
            loss = bce_sync_loss(v, a, y.to(self.device))
        self.backward_step(loss, self.opt)
        return {"loss": float(loss.detach())}

    def val_pairs(self) -> tuple[SyncPairs, np.ndarray, np.ndarray]:
        """Fixed held-back windows, each once in sync and once shifted."""
        if self._val is None:
            pairs = SyncPairs(
                self.val_segments(),
                self.codes,
                self.dims.frames,
                self.dims.mel_steps,
                self.hp.min_shift,
            )
            n = min(self.hp.val_windows, len(pairs.windows))
            ws = np.linspace(0, len(pairs.windows) - 1, n).round().astype(np.int64)
            self._val = (pairs, np.repeat(ws, 2), np.tile([True, False], n))
        return self._val

    def validate(self):
        return sync_accuracy(
            self.net, *self.val_pairs(), self.hp.batch_size, self.device, self.autocast
        )


def sync_accuracy(
    net, pairs: SyncPairs, ws: np.ndarray, labels: np.ndarray, batch_size: int, device, autocast
) -> dict[str, float]:
    """Pair accuracy, BCE and mean in-sync / shifted probability of ``net`` on fixed pairs."""
    gen = torch.Generator().manual_seed(12345)
    probs, ys = [], []
    for a in range(0, len(ws), batch_size):
        emb, mel, y = pairs.batch(ws[a : a + batch_size], labels[a : a + batch_size], gen)
        with autocast():
            v, s = net(emb.to(device), mel.to(device))
        probs.append(sync_probability(v, s).float().cpu())
        ys.append(y)
    p, y = torch.cat(probs), torch.cat(ys)
    acc = ((p > 0.5).float() == y).float().mean()
    # Calibration-free: how often a window's in-sync pair scores above its shifted pair
    # (``ws``/``labels`` come as such pairs: the same window once in sync, once shifted).
    same = (ws[0::2] == ws[1::2]) & labels[0::2] & ~labels[1::2] if len(ws) % 2 == 0 else None
    ranking = float((p[0::2] > p[1::2]).float().mean()) if same is not None and same.all() else float("nan")
    return {
        "accuracy": float(acc),
        "ranking": ranking,
        "bce": float(F.binary_cross_entropy(p, y)),
        "p_sync": float(p[y == 1].mean()),
        "p_shifted": float(p[y == 0].mean()),
        "pairs": int(len(y)),
    }
