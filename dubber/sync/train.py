"""Training the sync model: InfoNCE over audio offsets, with other clips as negatives.

A batch is ``clips`` runs of ``clip_frames`` consecutive readable grid frames, each from a
random track of a training video. Every lip window of a run is compared (cosine
similarity times a learnt scale) with the speech windows of its own run at offsets
``-max_offset .. max_offset`` and with every speech window of the other runs (other
speakers, other sentences); the loss is the cross-entropy of picking offset 0. Windows
whose audio is silent weigh ``silent_weight`` (they carry little timing).

Augmentation (:mod:`dubber.sync.augment`), so that the model carries to speakers it never
saw: of the lips, of the speech, and of both together (speed). With ``align`` it trains
twice, re-aligning the sound of training videos the first model finds off (see
:class:`SyncModelTrainConfig`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from dubber.models.dims import LipSyncDims
from dubber.models.threads import one_torch_thread
from dubber.sync.augment import (SILENCE, augment_lips, augment_mel, shift_mel,
                                  stretched_lips, stretched_mel)
from dubber.sync.data import VideoData
from dubber.sync.features import MEL_PER_FRAME
from dubber.sync.model import LipSyncNet
from dubber.sync.score import MAX_OFFSET, span_score, speech_frames, track_curves

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncModelTrainConfig:
    """Hyper-parameters of ``dub train sync-model``."""

    steps: int = 2000  # optimisation steps
    clips: int = 12  # runs per batch
    clip_frames: int = 24  # lip windows per run
    lr: float = 3e-3  # AdamW, cosine decay to lr / 20
    weight_decay: float = 1e-3
    silent_weight: float = 0.2  # loss weight of windows whose audio does not speak
    max_minutes: float = 0.0  # stop after this long (0 = no limit)
    val_every: int = 500  # steps between validations
    seed: int = 0
    augment: bool = True
    # speed perturbation: each run is played 1 +- up to this much faster or slower, picture
    # and sound together (both timelines resampled), so that speaking rates the training
    # speakers do not have are seen
    speed: float = 0.15
    # two rounds: train, measure each training video's own audio offset with that model,
    # advance or delay its sound by it where it is ALIGN_MIN frames or more (a corpus video
    # whose sound sits off its picture teaches a wrong timing), and train again from scratch
    align: bool = True


@dataclass
class TrainReport:
    steps: int
    seconds: float
    last_loss: float
    val: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)  # training sound shifts (align)


class _Runs:
    """Where runs of ``n`` readable lip windows start, per (video, track)."""

    def __init__(self, videos: list[VideoData], frames: int, n: int) -> None:
        self.items = []  # (video, seq, start positions, weights)
        self._speech: dict[int, np.ndarray] = {}
        half = frames // 2
        for v in videos:
            for s in v.seqs:
                r = s.readable.astype(np.int64)
                c = np.concatenate([[0], np.cumsum(r)])
                # window centred at k fully readable
                k = np.arange(half, len(s) - half)
                ok_c = np.zeros(len(s), bool)
                ok_c[k] = (c[k + half + 1] - c[k - half]) == frames
                cc = np.concatenate([[0], np.cumsum(ok_c)])
                starts = np.flatnonzero((cc[n:] - cc[:-n]) == n) if len(s) >= n else []
                if len(starts) == 0:
                    continue
                sp = self.speech(v).astype(np.float64)
                spc = np.concatenate([[0], np.cumsum(sp)])
                g = s.start + np.asarray(starts)
                frac = (spc[np.minimum(g + n, len(sp))] - spc[np.minimum(g, len(sp))]) / n
                self.items.append((v, s, np.asarray(starts), frac + 0.1))
        if not self.items:
            raise ValueError("no track has a run of readable frames long enough to train on")
        self.sizes = np.array([len(it[2]) for it in self.items], np.float64)

    def speech(self, v: VideoData) -> np.ndarray:
        """Speech per grid frame of a video (computed once)."""
        if id(v) not in self._speech:
            self._speech[id(v)] = speech_frames(v.mel)
        return self._speech[id(v)]

    def sample(self, rng: np.random.Generator):
        i = rng.choice(len(self.items), p=self.sizes / self.sizes.sum())
        v, s, starts, w = self.items[i]
        return v, s, int(starts[rng.choice(len(starts), p=w / w.sum())])


def make_batch(runs: _Runs, cfg: SyncModelTrainConfig, dims: LipSyncDims,
               rng: np.random.Generator, augment: bool):
    """(lips (C*L, T, D), mel windows (C*(L+2M), n_mels, 4T), weights (C*L,))."""
    T, L, M = dims.frames, cfg.clip_frames, MAX_OFFSET
    half = T // 2
    lips, mels, weights = [], [], []
    for _ in range(cfg.clips):
        v, s, k = runs.sample(rng)
        rate = 1.0
        if augment and cfg.speed > 0:
            rate = float(np.exp(rng.uniform(-1, 1) * math.log1p(cfg.speed)))
        f = stretched_lips(s, k, L + 2 * half, half, rate)
        if f is None:  # the stretched run would leave the readable frames
            rate = 1.0
            f = s.feats[k - half: k + L + half]
        if augment:
            f = augment_lips(f, rng)
        idx = np.arange(L)[:, None] + np.arange(T)
        lips.append(f[idx])
        g0 = s.start + k - M  # grid frame of speech window 0
        c0 = MEL_PER_FRAME * g0 - MEL_PER_FRAME * T // 2
        n_cols = MEL_PER_FRAME * (L + 2 * M - 1) + MEL_PER_FRAME * T
        mel = stretched_mel(v.mel, c0, n_cols, MEL_PER_FRAME * (s.start + k), rate)
        if augment:
            mel = augment_mel(mel, rng)
        cols = MEL_PER_FRAME * np.arange(L + 2 * M)[:, None] + np.arange(MEL_PER_FRAME * T)
        mels.append(mel[:, cols].transpose(1, 0, 2))
        sp = runs.speech(v)
        g = np.clip(s.start + k + np.round(np.arange(L) * rate).astype(int), 0, len(sp) - 1)
        weights.append(np.where(sp[g], 1.0, cfg.silent_weight))
    return (torch.from_numpy(np.concatenate(lips)), torch.from_numpy(np.concatenate(mels)),
            torch.from_numpy(np.concatenate(weights)).float())


def contrastive_loss(model: LipSyncNet, lips, mels, weights, clips: int, L: int):
    """Weighted InfoNCE: each lip window against its run's offsets and all other runs."""
    M = MAX_OFFSET
    v = model.embed_lips(lips)  # (C*L, E)
    a = model.embed_speech(mels)  # (C*(L+2M), E)
    logits = model.log_scale.exp() * v @ a.T
    n_a = L + 2 * M
    clip_of_v = torch.arange(clips).repeat_interleave(L)
    pos_in_clip = torch.arange(L).repeat(clips)
    clip_of_a = torch.arange(clips).repeat_interleave(n_a)
    pos_a = torch.arange(n_a).repeat(clips)
    same = clip_of_v[:, None] == clip_of_a[None, :]
    off = pos_a[None, :] - pos_in_clip[:, None]  # 0 .. 2M inside the own run's range
    allowed = ~same | ((off >= 0) & (off <= 2 * M))
    logits = logits.masked_fill(~allowed, -1e4)
    target = clip_of_v * n_a + pos_in_clip + M
    ce = F.cross_entropy(logits, target, reduction="none")
    return (ce * weights).sum() / weights.sum()


def validate(model: LipSyncNet, videos: list[VideoData], span: int = 50) -> dict[str, float]:
    """Held-back figures: share of speech windows, and of ``span``-frame spans (2 s),
    whose best offset is 0 (and within +-1), and the spans' mean confidence."""
    model.eval()
    win0 = win1 = n_win = 0
    sp0 = sp1 = n_sp = 0
    confs = []
    for v in videos:
        audio_mel = v.mel
        for s in v.seqs:
            curves = track_curves(model, s, _MelAudio(audio_mel))
            d = curves.dist
            ok = curves.valid & curves.speech
            if ok.any():
                j = np.argmin(d[ok], 1) - curves.max_offset
                win0 += int((j == 0).sum())
                win1 += int((np.abs(j) <= 1).sum())
                n_win += int(ok.sum())
            for a in range(0, len(s) - span + 1, span):
                sc = span_score(curves, slice(a, a + span))
                if sc is None or sc.windows < span // 2:
                    continue
                n_sp += 1
                sp0 += sc.offset == 0
                sp1 += abs(sc.offset) <= 1
                confs.append(sc.confidence)
    model.train()
    return {
        "val_window_offset0": win0 / max(n_win, 1),
        "val_window_offset1": win1 / max(n_win, 1),
        "val_span2s_offset0": sp0 / max(n_sp, 1),
        "val_span2s_offset1": sp1 / max(n_sp, 1),
        "val_span2s_confidence": float(np.mean(confs)) if confs else 0.0,
        "val_windows": n_win,
        "val_spans": n_sp,
    }


class _MelAudio:
    """A precomputed mel (column 0 = global step 0) read by
    :func:`~dubber.sync.features.mel_span` like audio; silence outside it."""

    def __init__(self, mel: np.ndarray) -> None:
        self.mel = mel

    def mel_columns(self, first: int, count: int) -> torch.Tensor:
        out = np.full((self.mel.shape[0], count), SILENCE, np.float32)
        a, b = max(first, 0), min(first + count, self.mel.shape[1])
        if b > a:
            out[:, a - first: b - first] = self.mel[:, a:b]
        return torch.from_numpy(out)


ALIGN_MIN = 2  # grid frames: a training video found this far off is re-aligned


def video_offset(model: LipSyncNet, v: VideoData) -> int:
    """The offset (grid frames) of a video's sound against all its tracks' lips: the
    minimum of the distance over offsets, averaged over every readable speech window."""
    total, n = None, 0
    for s in v.seqs:
        c = track_curves(model, s, _MelAudio(v.mel))
        keep = c.valid & c.speech
        if keep.any():
            d = c.dist[keep].sum(0)
            total = d if total is None else total + d
            n += int(keep.sum())
    return 0 if total is None else int(np.argmin(total)) - MAX_OFFSET


def train_model(dims: LipSyncDims, train: list[VideoData], val_videos: list[VideoData],
                cfg: SyncModelTrainConfig, progress=None) -> tuple[LipSyncNet, TrainReport]:
    """Train a :class:`LipSyncNet` from scratch; the returned model is in eval mode.

    With ``cfg.align``, two rounds (see :class:`SyncModelTrainConfig`); the report's
    ``val`` then holds ``offsets``: the training videos' sound shifts (grid frames).
    """
    import dataclasses

    if not cfg.align:
        return _train_once(dims, train, val_videos, cfg, progress)
    once = dataclasses.replace(cfg, align=False)

    def rounds(second: int):  # one progress bar over both rounds
        if progress is None:
            return None
        return lambda step, total, info: progress(second * total + step, 2 * total, info)

    first, r1 = _train_once(dims, train, [], once, rounds(0))
    offsets = {v.name: video_offset(first, v) for v in train}
    log.info("training videos' own offsets (grid frames): %s", offsets)
    shifted = [VideoData(v.name, v.seqs, shift_mel(v.mel, offsets[v.name]))
               if abs(offsets[v.name]) >= ALIGN_MIN else v for v in train]
    model, report = _train_once(dims, shifted, val_videos, once, rounds(1))
    report.seconds += r1.seconds
    report.offsets = {k: o for k, o in offsets.items() if abs(o) >= ALIGN_MIN}
    return model, report


def _train_once(dims: LipSyncDims, train: list[VideoData], val_videos: list[VideoData],
                cfg: SyncModelTrainConfig, progress=None) -> tuple[LipSyncNet, TrainReport]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = LipSyncNet(dims)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr / 20)
    runs = _Runs(train, dims.frames, cfg.clip_frames)
    t0 = time.perf_counter()
    loss_avg = None
    val: dict[str, float] = {}
    step = 0
    for step in range(1, cfg.steps + 1):
        lips, mels, w = make_batch(runs, cfg, dims, rng, cfg.augment)
        loss = contrastive_loss(model, lips, mels, w, cfg.clips, cfg.clip_frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        loss_avg = float(loss.detach()) if loss_avg is None else 0.98 * loss_avg + 0.02 * float(loss.detach())
        if progress:
            progress(step, cfg.steps, {"loss": loss_avg})
        if val_videos and cfg.val_every and step % cfg.val_every == 0:
            val = validate(model, val_videos)
            log.info("step %d: loss %.3f, %s", step, loss_avg,
                     ", ".join(f"{k} {v:.3f}" for k, v in val.items()))
        if cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes:
            log.info("stopping after %.1f minutes (--max-minutes)", cfg.max_minutes)
            break
    seconds = time.perf_counter() - t0
    if val_videos:
        val = validate(model, val_videos)
    model.eval()
    return model, TrainReport(step, seconds, float(loss_avg or 0), val)


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def split_videos(folder: Path, val: str = "") -> tuple[list[Path], list[Path]]:
    """The videos of ``folder`` as (train, validation), whole videos: ``val`` names the
    held-back ones (comma-separated stems); by default every fourth from the second in name
    order (2 of 8)."""
    from dubber.errors import InputError

    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of videos")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) < 2:
        raise InputError(f"{folder} has fewer than two videos; the sync model needs some to "
                         "train on and one to validate on")
    if val:
        names = {v.strip() for v in val.split(",") if v.strip()}
        missing = names - {p.stem for p in videos}
        if missing:
            raise InputError(f"validation video(s) not in {folder}: {', '.join(sorted(missing))}")
        held = [p for p in videos if p.stem in names]
    else:
        held = videos[1::4]
    return [p for p in videos if p not in held], held


def train_sync_model(folder, cfg, settings: dict, weights_dir=None, publish: bool = True,
                     dtype: str = "fp32", command: str = "", progress=None, cache=None):
    """``dub train sync-model --corpus FOLDER``: extract, train, validate, publish.

    Args:
        folder: a folder of talking-head videos (``dub prepare``'s inputs).
        cfg: the preset (dims in ``models.lip_sync``, name in ``models.weights.lip_sync``).
        settings: overrides of :class:`SyncModelTrainConfig` fields (None ignored), and
            ``val`` (held-back video stems, comma-separated).
        cache: where the extracted lips and mel are kept (default ``$DUBBER_CACHE/sync-data``).

    Returns:
        (TrainReport, ManifestEntry or None, weights folder).
    """
    import dataclasses
    import os

    from dubber.errors import UsageError
    from dubber.models.registry import resolve_weights_dir
    from dubber.sync.data import dataset
    from dubber.train.hparams import setting_value

    settings = {k: v for k, v in settings.items() if v is not None}
    val_names = str(settings.pop("val", ""))
    known = {f.name: f for f in dataclasses.fields(SyncModelTrainConfig)}
    hp_values = {}
    for k, v in settings.items():
        if k == "batch_size":
            k = "clips"
        if k == "checkpoint_every":
            continue
        if k not in known:
            raise UsageError(f"sync-model has no setting {k!r}; known: "
                             f"{', '.join(sorted(known))}, val")
        # as text, so that a number given for another type is converted as --set's are
        hp_values[k] = setting_value(k, str(v), getattr(SyncModelTrainConfig(), k))
    hp = SyncModelTrainConfig(**hp_values)
    folder = Path(folder)
    train_v, val_v = split_videos(folder, val_names)
    root = Path(os.environ.get("DUBBER_CACHE") or Path.home() / ".cache" / "dubber")
    cache = Path(cache) if cache else root / "sync-data"
    t0 = time.perf_counter()
    data = dataset(train_v + val_v, cache, cfg, progress=lambda n: log.info("lips of %s", n))
    extract_s = time.perf_counter() - t0
    train_d, val_d = data[: len(train_v)], data[len(train_v):]
    with one_torch_thread():  # the model's small ops run faster on one thread than on two
        model, report = train_model(cfg.models.lip_sync, train_d, val_d, hp, progress)
    entry = None
    wdir = resolve_weights_dir(weights_dir)
    if publish:
        from dubber.train.publish import publish as publish_weights

        figures = {k: (v if isinstance(v, int) else round(float(v), 4))
                   for k, v in report.val.items()}
        figures.update(train_minutes=round(report.seconds / 60, 2),
                       extract_minutes=round(extract_s / 60, 2), steps=report.steps,
                       train_loss=round(report.last_loss, 4))
        frames = sum(int(s.readable.sum()) for d in train_d for s in d.seqs)
        trained_on = (f"a small internal test set: the lips of {len(train_v)} talking-head "
                      f"videos ({frames} readable frames at 25 fps: "
                      f"{', '.join(p.stem for p in train_v)}); validated on "
                      f"{', '.join(p.stem for p in val_v)}; {report.steps} steps of "
                      f"{hp.clips} x {hp.clip_frames} windows"
                      + ("; the sound of " + ", ".join(f"{k} advanced by {o} frames"
                                                       for k, o in report.offsets.items())
                         + " for the second round (found off by the first)"
                         if report.offsets else "")
                      + (f"; command: {command}" if command else ""))
        name = cfg.models.weights.lip_sync or "lip-sync"
        entry = publish_weights(model, "lip_sync", name, wdir, trained_on, figures, dtype)
    return report, entry, wdir
