"""Per-character dub stems: each character's own dub track drives only that character's
mouth, and the stems mixed are the output's dub track.

A manifest episode gives ``stems: {ANNA: anna.wav, BEN: ben.wav}``. Each stem is matched to
face tracks of the analysis, explicitly (``stem_tracks: {ANNA: 3}``, ids from
``dub inspect``) or automatically by :func:`match_stems`: a dub is timed to the original,
so a character's stem speaks when that character's lips moved in the original. A track
with a stem is re-rendered where its stem speaks and where it spoke in the original (to
close the mouth a silent stem leaves); a track without one is left alone. In the generate
stage each face hears its own stem (:func:`face_mel_windows`).

The speaking-time correlation is a stand-in: the lip-sync model (the sync issue) will
replace :func:`match_stems`, the one function that decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import subprocess
from pathlib import Path
from typing import Mapping

import numpy as np

from dubber.chunk import Chunk
from dubber.config import Config
from dubber.errors import InputError, UsageError
from dubber.faces.tracks_file import Shot, Tracks, Window

log = logging.getLogger(__name__)

# A stem "speaks" on a frame when its speech-band loudness is within this many dB of its
# own loud level (95th percentile), after smoothing over ACTIVITY_SMOOTH seconds.
ACTIVITY_DB = 25.0
ACTIVITY_SMOOTH = 0.3
# Lips "move" on a frame when the aperture's range within +- MOTION_SPAN seconds is this
# large (fraction of the eye distance; see faces/speaker.py MIN_APERTURE_RANGE).
MOTION_SPAN = 0.5
# A stem is matched to a track only when their activities correlate at least this much.
MIN_MATCH = 0.2
# Keep a track's re-rendered runs going through pauses shorter than this (seconds).
MIN_GAP = 0.4


def stem_activity(envelope_db: np.ndarray, fps: float) -> np.ndarray:
    """Speaking (True) per frame from a stem's speech envelope, shape = (N,) bool."""
    from scipy.ndimage import uniform_filter1d

    env = uniform_filter1d(envelope_db, max(1, int(round(ACTIVITY_SMOOTH * fps))))
    loud = np.percentile(env, 95)
    return env > max(loud - ACTIVITY_DB, -90.0)


def lip_motion(tracks: Tracks, track_id: int, fps: float) -> np.ndarray:
    """Per frame of the film, how much the track's lips move (aperture range around it);
    0 outside the track. shape = (frame_count,) float64."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    t = tracks.track(track_id)
    ap = np.nan_to_num(np.asarray(t.aperture, np.float64), nan=np.nanmedian(t.aperture)
                       if np.isfinite(t.aperture).any() else 0.0)
    span = max(1, int(round(2 * MOTION_SPAN * fps)) | 1)
    motion = maximum_filter1d(ap, span) - minimum_filter1d(ap, span)
    out = np.zeros(tracks.frame_count)
    out[t.first:t.last + 1] = motion
    return out


def speaking_in_original(tracks: Tracks, track_id: int) -> np.ndarray:
    """Per frame of the film, how much the track speaks in the original: 1 inside the
    analysis's speaking windows of the track, plus half its normalised lip motion (so
    that a track the analysis never chose still has a signal). shape = (frame_count,)."""
    fps = float(tracks.frame_rate)
    motion = lip_motion(tracks, track_id, fps)
    top = motion.max()
    out = 0.5 * motion / top if top > 0 else motion
    for shot in tracks.shots:
        for w in shot.windows:
            if w.track == track_id:
                out[w.start:w.end + 1] += 1.0
        if not shot.windows and shot.selected_track == track_id:
            out[shot.start:shot.end + 1] += 1.0
    return out


def match_stems(tracks: Tracks, activity: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """Which tracks each stem dubs: every track goes to the stem whose speaking correlates
    best with the track's speaking in the original (:func:`speaking_in_original`: the
    analysis's speaker windows and lip motion; at least ``MIN_MATCH``); tracks that share a
    shot go to different stems (the best one-to-one assignment of the shot).

    Args:
        tracks: the analysis of the film.
        activity: per stem, speaking per frame, shape = (frame_count,) bool.

    Returns:
        stem name -> track ids (possibly empty).
    """
    names = list(activity)
    out: dict[str, list[int]] = {n: [] for n in names}
    for shot in tracks.shots:
        ids = [t.id for t in tracks.tracks if t.first >= shot.start and t.last <= shot.end]
        if not ids:
            continue
        score = np.zeros((len(ids), len(names)))
        for i, tid in enumerate(ids):
            t = tracks.track(tid)
            m = speaking_in_original(tracks, tid)[t.first:t.last + 1]
            for j, n in enumerate(names):
                a = activity[n][t.first:t.last + 1].astype(np.float64)
                if m.std() > 1e-9 and a.std() > 1e-9:
                    score[i, j] = float(np.corrcoef(m, a)[0, 1])
        best, pick = -np.inf, None
        # Tracks of one shot are different characters: a one-to-one assignment (stems may
        # go unused); tracks beyond the number of stems get none.
        for perm in itertools.permutations(range(len(names)), min(len(ids), len(names))):
            for rows in itertools.combinations(range(len(ids)), len(perm)):
                total = sum(max(score[r, c], 0) for r, c in zip(rows, perm))
                if total > best:
                    best, pick = total, list(zip(rows, perm))
        for r, c in pick or []:
            if score[r, c] >= MIN_MATCH:
                out[names[c]].append(ids[r])
        log.info("shot %d-%d: stem/track correlations %s", shot.start, shot.end,
                 {f"{names[c]}->{ids[r]}": round(float(score[r, c]), 2)
                  for r in range(len(ids)) for c in range(len(names))})
    return out


def stem_windows(tracks: Tracks, assignment: Mapping[str, list[int]],
                 activity: Mapping[str, np.ndarray]) -> Tracks:
    """The tracks file re-rendered with stems: each assigned track where its stem speaks or
    where it spoke in the original; nothing else."""
    fps = float(tracks.frame_rate)
    gap = int(round(MIN_GAP * fps))
    shots = []
    for shot in tracks.shots:
        wins = []
        for name, ids in assignment.items():
            for tid in ids:
                t = tracks.track(tid)
                lo, hi = max(t.first, shot.start), min(t.last, shot.end)
                if lo > hi:
                    continue
                on = activity[name][lo:hi + 1].copy()
                for w in shot.windows:
                    if w.track == tid:
                        on[max(w.start, lo) - lo:min(w.end, hi) - lo + 1] = True
                if not shot.windows and shot.selected_track == tid:
                    on[:] = True
                wins += [Window(lo + a, lo + b, tid) for a, b in _runs(on, gap)]
        shots.append(Shot(shot.start, shot.end, None, tuple(sorted(
            wins, key=lambda w: (w.start, w.track)))))
    return dataclasses.replace(tracks, shots=tuple(shots))


def _runs(on: np.ndarray, gap: int) -> list[tuple[int, int]]:
    idx = np.flatnonzero(on)
    if not len(idx):
        return []
    runs, start, prev = [], int(idx[0]), int(idx[0])
    for i in idx[1:]:
        if i - prev > gap + 1:
            runs.append((start, prev))
            start = int(i)
        prev = int(i)
    runs.append((start, prev))
    return runs


def face_mel_windows(chunk: Chunk, track_ids, frames, steps: int):
    """(M, n_mels, steps) float32: each face's mel window from its own track's stem
    (``chunk.stems``: track id -> AudioTrack), silence for a track without one.

    Args:
        track_ids: per face, its track id, length M.
        frames: per face, its frame's row in the chunk, length M.
    """
    import torch
    from fractions import Fraction

    from dubber.media.audio import mel_windows

    stems = chunk.stems
    times = [Fraction(int(p)) * chunk.time_base for p in chunk.pts]
    frames = np.asarray(frames)
    out = None
    for tid in dict.fromkeys(int(t) for t in track_ids):
        rows = [m for m, t in enumerate(track_ids) if int(t) == tid]
        audio = stems.get(tid)
        if audio is None:
            continue
        mel = mel_windows(audio, [times[frames[m]] for m in rows], steps)
        if out is None:
            out = torch.full((len(frames), *mel.shape[1:]), float(mel.min()))
        out[rows] = mel
    return out


class StemsStage:
    """A stage that hands each chunk the stems, by track id, for the generate stage."""

    def __init__(self, by_track: Mapping[int, object]) -> None:
        self.by_track = by_track  # filled once the tracks are known (before the first chunk)

    def __call__(self, chunk: Chunk, models: object, cfg: object) -> Chunk:
        chunk.stems = self.by_track
        return chunk


def mix_stems(stems: Mapping[str, Path], output: Path,
              stem_tracks: Mapping[str, int] | None = None) -> Path:
    """The stems summed (no level change) into one 48 kHz float WAV beside ``output``,
    named by the stems' identity and their track mapping: a resumed run finds the same
    file, and a changed mapping (other pixels) gives another one, so segments made with
    the old mapping are not taken for the new."""
    from dubber.media.ffmpeg import ffmpeg_exe

    ident = hashlib.sha256(repr((sorted(
        (k, str(Path(v).resolve()), Path(v).stat().st_size, Path(v).stat().st_mtime_ns)
        for k, v in stems.items()), sorted((stem_tracks or {}).items()))).encode()
    ).hexdigest()[:12]
    mix = output.parent / f".{output.name}.mix-{ident}.wav"
    if mix.exists():
        return mix
    tmp = mix.with_name(mix.name + ".tmp.wav")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for p in stems.values():
        cmd += ["-i", str(p)]
    n = len(stems)
    cmd += ["-filter_complex", f"amix=inputs={n}:duration=longest:normalize=0,"
            "aresample=48000", "-ac", "1", "-c:a", "pcm_f32le", "-fflags", "+bitexact",
            "-map_metadata", "-1", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot mix the stems: {proc.stderr.strip().splitlines()[-1:]}")
    tmp.replace(mix)
    return mix


def assign(tracks: Tracks, stems: Mapping[str, object], explicit: Mapping[str, int],
           fps: float) -> tuple[dict[str, list[int]], dict[str, np.ndarray]]:
    """Stem -> track ids (explicit where given, else :func:`match_stems`), and each stem's
    speaking per frame."""
    from dubber.faces.speaker import speech_envelope

    times = np.arange(tracks.frame_count) / fps
    activity = {n: stem_activity(speech_envelope(a, a.sample_rate, times), fps)
                for n, a in stems.items()}
    known = {t.id for t in tracks.tracks}
    for name, tid in explicit.items():
        if tid not in known:
            raise UsageError(f"stem_tracks.{name}: no track {tid} in the analysis "
                             f"(see `dub inspect`)")
    rest = {n: a for n, a in activity.items() if n not in explicit}
    auto = match_stems(tracks, rest) if rest else {}
    taken = set(explicit.values())
    out = {n: [tid] for n, tid in explicit.items()}
    for n, ids in auto.items():
        out[n] = [t for t in ids if t not in taken]
    return out, activity


def dub_with_stems(spec: dict, cfg: Config):
    """Render one episode whose dub comes as per-character stems (a batch worker's job).

    Returns:
        the :class:`~dubber.pipeline.RenderResult`.
    """
    from dubber.media.audio import AudioTrack
    from dubber.pipeline import dub_video

    if cfg.runtime.passthrough:
        raise UsageError("stems need the model stages, not --passthrough")
    output = Path(spec["output"])
    stems = {k: Path(v) for k, v in spec["stems"].items()}
    mix = mix_stems(stems, output, spec.get("stem_tracks"))
    opened = {}
    try:
        for name, path in stems.items():
            opened[name] = AudioTrack(path, sample_rate=16000)
        by_track: dict[int, object] = {}

        def adapt(tracks: Tracks) -> Tracks:
            assignment, activity = assign(tracks, opened, spec.get("stem_tracks") or {},
                                          float(tracks.frame_rate))
            for name, ids in assignment.items():
                if not ids:
                    log.warning("stem %s matches no face track: it is heard, no mouth "
                                "follows it", name)
                for tid in ids:
                    by_track[tid] = opened[name]
            log.info("stems -> tracks: %s", assignment)
            return stem_windows(tracks, assignment, activity)

        result = dub_video(spec["input"], mix, output, cfg, weights_dir=spec.get("weights"),
                           tracks_file=spec.get("tracks"), force=spec.get("force", False),
                           resume=True, keep_parts=True, adapt_tracks=adapt,
                           pre_stages=(StemsStage(by_track),), track_dubs=by_track)
    finally:
        for a in opened.values():
            a.close()
    mix.unlink(missing_ok=True)
    return result

