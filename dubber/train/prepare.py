"""``dub prepare``: videos -> a training corpus (the paper's 4KTF preprocessing).

Per video: (1) resample to 25 fps (an FFmpeg re-encode unless it already is 25 fps CFR),
(2) the analysis pass of :mod:`dubber.faces` (detection at quarter resolution, tracking,
shot cuts, speaker windows from the lips' correlation with the original speech), (3) keep
the frames where exactly one face is on screen and it speaks in sync with the audio (the
analysis' speaker windows), as runs of at least ``min_frames``, (4) cut the square crops
exactly as the render path does (``models.crop_scale``, colour from the video's metadata)
and resize them to the corpus size, (5) 16 kHz audio and log-mel of each run. A finished
video leaves ``done.json``; running again skips it, so an interrupted preparation resumes.
Finally the videos are split into train/val (by video) and ``corpus.json`` is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dubber.config import Config
from dubber.errors import InputError, RunError, UsageError
from dubber.train.corpus import (
    FPS,
    MANIFEST,
    MEL_PAD,
    MEL_PER_FRAME,
    SAMPLES_PER_FRAME,
    CorpusManifest,
    SegmentInfo,
    VideoInfo,
    atomic_write,
    write_manifest,
    write_segment,
)

log = logging.getLogger(__name__)

GREY = 128  # uint8 value of 0.0 in [-1, 1]: what mask_lower_face writes


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of one preparation (recorded in the manifest)."""

    crop_size: int = 128  # side of the stored crops (the preset's Face-VQGAN resolution)
    min_frames: int = 30  # shortest segment kept (the expert needs T = 25 frames)
    max_frames: int = 250  # longer runs are cut into pieces of at most this (10 s)
    val_fraction: float = 0.15  # share of the videos held back for validation
    max_seconds: float = 0.0  # only the first this many seconds of each video (0 = all)


@dataclass(frozen=True)
class _Run:
    track: int
    first: int
    last: int  # inclusive


def video_key(path: Path) -> str:
    """``<stem>-<8 hex>``: the hash covers the size and the first and last MiB."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return f"{path.stem}-{h.hexdigest()[:8]}"


def resample_25fps(info, out: Path, max_seconds: float) -> Path:
    """The video at 25 fps CFR: the file itself when it already is, else an FFmpeg
    re-encode (x264 crf 12, no audio, MP4) written to ``out``."""
    from dubber.media.ffmpeg import ffmpeg_exe

    if info.frame_rate == FPS and not info.is_vfr and not max_seconds:
        return Path(info.path)
    if out.is_file():
        return out
    seconds = float(info.duration) if not max_seconds else min(float(info.duration), max_seconds)
    frames = max(1, int(seconds * FPS))
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-i",
        str(info.path),
        "-map",
        f"0:{info.stream_index}",
        "-vf",
        f"fps={FPS}",
        "-frames:v",
        str(frames),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "12",
        "-pix_fmt",
        "yuv420p",
        "-an",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}")
    proc = subprocess.run(cmd + ["-f", "mp4", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(
            f"resampling {info.path} to {FPS} fps failed: "
            f"{(proc.stderr.strip().splitlines() or [proc.returncode])[-1]}"
        )
    os.replace(tmp, out)
    return out


def single_speaker_runs(tracks, min_frames: int, max_frames: int) -> list[_Run]:
    """Frames where one face, and only one, is on screen and speaking.

    Args:
        tracks: a :class:`dubber.faces.tracks_file.Tracks`.

    Returns:
        runs of at least ``min_frames`` and at most ``max_frames`` frames.
    """
    n = tracks.frame_count
    faces_on = np.zeros(n, np.int32)
    for t in tracks.tracks:
        faces_on[t.first : t.last + 1] += 1
    runs = []
    for shot in tracks.shots:
        for w in shot.windows:
            ok = faces_on[w.start : w.end + 1] == 1
            # split the window where another face appears
            start = None
            for i, good in enumerate(list(ok) + [False]):
                if good and start is None:
                    start = i
                elif not good and start is not None:
                    runs += _cut(
                        _Run(w.track, w.start + start, w.start + i - 1), min_frames, max_frames
                    )
                    start = None
    return runs


def frame_accounting(tracks, runs: list[_Run]) -> dict[str, int]:
    """How many frames of a video were kept and why the rest were dropped.

    Returns:
        ``frames`` (all), ``kept``, and the dropped ones: ``not_in_sync`` (no face whose
        lips the sync model finds in sync with the video's own speech, silence included),
        ``several_faces`` (speaking, but another face is on screen), ``short`` (in runs
        shorter than ``--min-frames``, or cut off when a long run was split).
    """
    n = tracks.frame_count
    faces_on = np.zeros(n, np.int32)
    for t in tracks.tracks:
        faces_on[t.first: t.last + 1] += 1
    speaking = np.zeros(n, bool)
    for shot in tracks.shots:
        for w in shot.windows:
            speaking[w.start: w.end + 1] = True
    kept = sum(r.last - r.first + 1 for r in runs)
    several = int((speaking & (faces_on != 1)).sum())
    return {"frames": n, "kept": kept, "not_in_sync": int(n - speaking.sum()),
            "several_faces": several, "short": int(speaking.sum()) - several - kept}


def describe_accounting(acc: dict[str, int]) -> str:
    """One line: kept K of N frames; dropped A not in sync, B with several faces, C short."""
    n = max(acc.get("frames", 0), 1)
    return (f"kept {acc.get('kept', 0)} of {acc.get('frames', 0)} frames "
            f"({100 * acc.get('kept', 0) / n:.0f}%); dropped {acc.get('not_in_sync', 0)} with "
            f"no face in sync with the speech (or silence), {acc.get('several_faces', 0)} with "
            f"several faces on screen, {acc.get('short', 0)} in runs shorter than min-frames")


def _cut(run: _Run, min_frames: int, max_frames: int) -> list[_Run]:
    n = run.last - run.first + 1
    if n < min_frames:
        return []
    pieces = max(1, math.ceil(n / max_frames))
    size = math.ceil(n / pieces)
    out = []
    for a in range(run.first, run.last + 1, size):
        b = min(a + size - 1, run.last)
        if b - a + 1 >= min_frames:
            out.append(_Run(run.track, a, b))
    return out


def crop_square(frames, i: int, box, crop_scale: float, size: int, spec) -> np.ndarray:
    """The render path's crop (:func:`dubber.faces.crop.cut_square`) of one face at ``size``.

    Returns:
        shape = (size, size, 3), uint8 RGB.
    """
    from dubber.faces.crop import cut_square, square_box

    t = cut_square(frames, i, square_box(tuple(box), crop_scale, frames.layout), size, spec)
    if t is None:
        return np.full((size, size, 3), GREY, np.uint8)
    return (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def _segment_audio(audio: np.ndarray, mel_all, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(int16 samples, float16 mel) of frames ``first .. first + n - 1``."""
    from dubber.media.audio import SILENCE_LOG_MEL

    a = first * SAMPLES_PER_FRAME
    samples = np.zeros(n * SAMPLES_PER_FRAME, np.float32)
    part = audio[a : a + len(samples)]
    samples[: len(part)] = part
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype(np.int16)
    s0 = first * MEL_PER_FRAME - MEL_PAD
    width = n * MEL_PER_FRAME + 2 * MEL_PAD
    mel = np.full((mel_all.shape[0], width), SILENCE_LOG_MEL, np.float32)
    lo, hi = max(s0, 0), min(s0 + width, mel_all.shape[1])
    if hi > lo:
        mel[:, lo - s0 : hi - s0] = mel_all[:, lo:hi]
    return pcm, mel.astype(np.float16)


def prepare_video(
    src: Path,
    out: Path,
    cfg: Config,
    opts: PrepareOptions,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Prepare one video into ``out/videos/<key>/``; returns its ``done.json`` record
    (reused as is when the folder is already finished)."""
    from dubber.faces.analyze import analyze
    from dubber.media.audio import load_audio, log_mel
    from dubber.media.color import ColorSpec
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    key = video_key(src)
    folder = out / "videos" / key
    done = folder / "done.json"
    settings = _settings(cfg, opts)
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("settings") == settings:
            log.info("%s: already prepared, skipped", src.name)
            return record
        log.info("%s: prepared with other settings, preparing again", src.name)
    folder.mkdir(parents=True, exist_ok=True)
    info = probe(src)
    if not info.audio:
        raise InputError(f"{src} has no audio stream: a training video needs its own speech")
    # 1. 25 fps.
    video25 = resample_25fps(info, out / "tmp" / f"{key}.mp4", opts.max_seconds)
    info25 = probe(video25)
    # 2. Analysis (cached in the corpus, so a resumed preparation does not redo it).
    tracks = analyze(video25, cfg, audio_path=src, cache_dir=out / "analysis")
    runs = single_speaker_runs(tracks, opts.min_frames, opts.max_frames)
    accounting = frame_accounting(tracks, runs)
    log.info("%s: %d tracks, %d single-speaker segments; %s", src.name, len(tracks.tracks),
             len(runs), describe_accounting(accounting))
    # 3. Audio once for the whole video.
    audio = load_audio(src)
    mel_all = log_mel(audio).numpy()
    # 4. Crops, in one decoding pass over the frames that are needed.
    spec = ColorSpec.from_names(
        info25.color.matrix, info25.color.range, info25.width, info25.height
    )
    wanted: dict[int, list[tuple[int, int]]] = {}  # frame -> [(run, position)]
    for r, run in enumerate(runs):
        for f in range(run.first, run.last + 1):
            wanted.setdefault(f, []).append((r, f - run.first))
    crops = [
        np.zeros((run.last - run.first + 1, opts.crop_size, opts.crop_size, 3), np.uint8)
        for run in runs
    ]
    boxes = [np.zeros((run.last - run.first + 1, 4), np.float32) for run in runs]
    last_needed = max(wanted) if wanted else -1
    if runs:
        chunks = read_chunks(info25, 32, analysis_scale=0.0, full=True)
        try:
            for chunk in chunks:
                for i, f in enumerate(chunk.frame_indices.tolist()):
                    for r, pos in wanted.get(f, ()):
                        box = tracks.track(runs[r].track).box_at(f)
                        boxes[r][pos] = box
                        crops[r][pos] = crop_square(
                            chunk.frames, i, box, cfg.models.crop_scale, opts.crop_size, spec
                        )
                if progress:
                    progress(len(chunk))
                if chunk.frame_indices[-1] >= last_needed:
                    break
        finally:
            chunks.close()
    # 5. Segments.
    segments = []
    mask_row = int(round(cfg.models.pose_mask_from * opts.crop_size))
    for r, run in enumerate(runs):
        n = run.last - run.first + 1
        pcm, mel = _segment_audio(audio, mel_all, run.first, n)
        masked = crops[r].copy()
        masked[:, mask_row:] = GREY
        name = f"seg_{r:04d}.npz"
        write_segment(
            folder / name,
            {
                "crops": crops[r],
                "masked": masked,
                "mel": mel,
                "audio": pcm,
                "frames": np.arange(run.first, run.last + 1, dtype=np.int32),
                "boxes": boxes[r],
            },
        )
        t = tracks.track(run.track)
        speaking = float(np.mean(t.speaking[run.first - t.first : run.last - t.first + 1]))
        segments.append(
            asdict(
                SegmentInfo(
                    f"videos/{key}/{name}", key, run.first, n, run.track, round(speaking, 4)
                )
            )
        )
    record = {
        "key": key,
        "source": str(src),
        "seconds": float(info.duration),
        "frames": tracks.frame_count,
        "segments": segments,
        "settings": settings,
        "accounting": accounting,
    }
    atomic_write(done, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    tmp25 = out / "tmp" / f"{key}.mp4"
    if tmp25.exists():
        tmp25.unlink()
    return record


def _settings(cfg: Config, opts: PrepareOptions) -> dict:
    from dubber.faces.analyze import settings_of

    return {
        "prepare": asdict(opts),
        "crop_scale": cfg.models.crop_scale,
        "pose_mask_from": cfg.models.pose_mask_from,
        "faces": settings_of(cfg.faces),
    }


def split_videos(keys: Sequence[str], val_fraction: float) -> set[str]:
    """The videos held back for validation: a fixed choice by hash of the key, at least
    one when there are two or more videos and ``val_fraction`` > 0."""
    if len(keys) < 2 or val_fraction <= 0:
        return set()
    n_val = min(len(keys) - 1, max(1, round(val_fraction * len(keys))))
    ranked = sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    return set(ranked[:n_val])


def prepare(
    videos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    cfg: Config,
    opts: PrepareOptions = PrepareOptions(),
    progress: Callable[[str, int], None] | None = None,
) -> CorpusManifest:
    """Prepare (or resume preparing) a corpus from ``videos`` into ``out``.

    Args:
        videos: source files (any rate, any size, with their original speech).
        out: the corpus folder (created; an existing corpus there is extended/resumed).
        cfg: the configuration (``faces`` for the analysis, ``models.crop_scale`` and
            ``models.pose_mask_from`` for the crops).
        opts: corpus settings.
        progress: called with (video name, frames decoded) while cropping.

    Returns:
        the manifest written to ``out/corpus.json``.

    Raises:
        InputError: a video is missing or unusable; UsageError: bad options.
    """
    if not videos:
        raise UsageError("give at least one video to prepare")
    if opts.min_frames < 1 or opts.max_frames < opts.min_frames:
        raise UsageError(
            f"need 1 <= min_frames <= max_frames, got {opts.min_frames}, {opts.max_frames}"
        )
    if opts.crop_size < 16:
        raise UsageError(f"crop size must be at least 16, got {opts.crop_size}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; -o takes a folder")
    paths = [Path(v) for v in videos]
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for p in paths:
        cb = (lambda n, name=p.name: progress(name, n)) if progress else None
        records.append(prepare_video(p, out, cfg, opts, cb))
    val = split_videos([r["key"] for r in records], opts.val_fraction)
    if not val and opts.val_fraction > 0:
        log.warning(
            "only one video: the validation split will be empty; give two or more "
            "videos for a held-back split"
        )
    manifest = CorpusManifest(
        opts.crop_size,
        cfg.models.crop_scale,
        cfg.models.pose_mask_from,
        settings=records[0]["settings"] if records else {},
    )
    for r in records:
        split = "val" if r["key"] in val else "train"
        segs = [replace(SegmentInfo(**s), split=split) for s in r["segments"]]
        manifest.segments += segs
        manifest.videos.append(
            VideoInfo(
                r["key"],
                r["source"],
                round(r["seconds"], 3),
                r["frames"],
                sum(s.frames for s in segs),
                split,
            )
        )
    for r in records:
        for k, v in r.get("accounting", {}).items():
            manifest.frame_accounting[k] = manifest.frame_accounting.get(k, 0) + v
    write_manifest(out, manifest)
    log.info("wrote %s: %s", out / MANIFEST, json.dumps(manifest.counts()))
    return manifest
