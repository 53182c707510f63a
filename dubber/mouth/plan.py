"""The mouth plan of one render: for every dubbed face, which bank frames it shows.

Made once per run, after the analysis and the banks and before the first chunk: for each
dubbed track, its dubbed frames are split into speaking windows (runs of consecutive
frames); each window gets its targets (:func:`~dubber.mouth.target.actor_targets`) and one
shortest path over the bank (:func:`~dubber.mouth.choose.choose`). The render stage then
only looks the plan up. Small: a few numbers per dubbed frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dubber.config import MouthConfig
from dubber.faces.tracks_file import Tracks
from dubber.mouth.bank import MouthBank, build_banks
from dubber.mouth.choose import Blend, choose, face_scale
from dubber.mouth.target import actor_targets
from dubber.mouth.track import MouthTrack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedFace:
    """One dubbed face on one frame.

    Attributes:
        blend: the bank rows shown and their weights.
        alpha: the weight of the new mouth over the original (fades in and out at the
            ends of a speaking window).
    """

    blend: Blend
    alpha: float


def windows(frames) -> list[np.ndarray]:
    """Runs of consecutive frame numbers in the sorted ``frames``."""
    if not len(frames):
        return []
    f = np.asarray(frames, np.int64)
    breaks = np.flatnonzero(np.diff(f) != 1) + 1
    return np.split(f, breaks)


def fade_weights(n: int, fade: int) -> np.ndarray:
    """Per frame of an n-frame window: ramps of ``fade`` frames up at its start and down at
    its end, 1 between."""
    k = np.arange(n)
    ramp = np.minimum((k + 1) / (fade + 1), (n - k) / (fade + 1)) if fade > 0 else np.ones(n)
    return np.clip(ramp, 0.0, 1.0)


def _faded(blend: Blend, ramp: float, row: int, bank: MouthBank) -> PlannedFace:
    """Near a window's ends the new mouth morphs from the frame's own (its bank row, when
    kept: a morph between two real mouths, not a double exposure); else it fades."""
    if ramp >= 1.0:
        return PlannedFace(blend, 1.0)
    if not bank.kept[row]:
        return PlannedFace(blend, ramp)
    weights = dict(zip(blend.rows, (w * ramp for w in blend.weights)))
    weights[row] = weights.get(row, 0.0) + (1.0 - ramp)
    return PlannedFace(Blend(tuple(weights), tuple(weights.values()), blend.cost), 1.0)


def dubbed_frames(tracks: Tracks) -> dict[int, np.ndarray]:
    """Track id -> the frames it is re-rendered on, for every track that is on some."""
    from dubber.mouth.calibrate import speaking_frames

    frames = {t.id: speaking_frames(tracks, t) for t in tracks.tracks}
    return {tid: f for tid, f in frames.items() if len(f)}


def dubbed_banks(info, tracks: Tracks, cfg, per_track: dict[int, np.ndarray] | None = None,
                 cache=None, progress=None, hands: bool | None = None
                 ) -> dict[int, MouthBank]:
    """The mouth banks of every dubbed track (:func:`dubbed_frames`, or the keys of
    ``per_track``), from the cache or made in one pass
    (:func:`~dubber.mouth.bank.build_banks`; ``hands``: default ``cfg.mouth.keep_hands``)."""
    from dubber.media.color import ColorSpec

    per_track = dubbed_frames(tracks) if per_track is None else per_track
    color = ColorSpec.from_names(info.color.matrix, info.color.range, info.width, info.height)
    return build_banks(info, tracks, per_track, cfg.mouth.bank_frames, color, cache=cache,
                       chunk_frames=cfg.media.chunk_frames, progress=progress,
                       hands=cfg.mouth.keep_hands if hands is None else hands)


def make_plan(tracks: Tracks, banks: dict[int, MouthBank],
              dub: Callable[[object, np.ndarray], MouthTrack],
              cfg: MouthConfig, per_track: dict[int, np.ndarray] | None = None
              ) -> dict[tuple[int, int], PlannedFace]:
    """(frame, track id) -> what that face shows, for every dubbed face the bank can draw.

    Args:
        tracks: the analysis (its speakers are the dubbed faces).
        banks: track id -> bank (from :func:`~dubber.mouth.bank.build_banks`).
        dub: (track, frame numbers) -> the dub's mouth track at those frames for that
            actor (:meth:`dubber.mouth.target.DubMouths.for_track`).
        cfg: the mouth settings.
        per_track: :func:`dubbed_frames` of ``tracks``, when the caller has it already.

    Faces absent from the plan (no mesh on that frame, no close bank frame) are left to the
    fallback renderer.
    """
    if per_track is None:
        per_track = dubbed_frames(tracks)
    plan: dict[tuple[int, int], PlannedFace] = {}
    for tid, frames in per_track.items():
        bank = banks.get(tid)
        if bank is None or len(bank) == 0:
            continue
        for win in windows(frames):
            rows = [bank.row(int(f)) for f in win]
            ok = np.array([r is not None for r in rows])
            if not ok.any():
                continue
            # Frames the mesh missed take their neighbours' pose and light.
            idx = np.array([r if r is not None else -1 for r in rows])
            fill = np.interp(np.arange(len(win)), np.flatnonzero(ok), idx[ok]).round().astype(int)
            pose, colour = bank.pose[fill], bank.colour[fill]
            scale = face_scale(bank.points[fill].astype(np.float64))
            sub = dub(tracks.track(tid), win)
            blends = choose(bank, actor_targets(sub, bank), pose, colour, cfg, scale,
                            bank.detail[fill])
            ramp = fade_weights(len(win), cfg.fade)
            for f, blend, a, row in zip(win.tolist(), blends, ramp, rows):
                if blend is not None and row is not None:
                    plan[(f, tid)] = _faded(blend, float(a), row, bank)
    n = sum(len(v) for v in per_track.values())
    log.info("mouth plan: %d of %d dubbed faces from the actors' own mouths", len(plan), n)
    return plan


def plan_run(info, tracks: Tracks, dub_path, cfg, progress=None, weights_dir=None,
             track_dubs=None, mouths=None
             ) -> tuple[dict[tuple[int, int], PlannedFace], dict[int, MouthBank]]:
    """Banks and plan of one render: the dubbed tracks' banks (cached), the dub's mouth
    track at every frame's own timestamp, and :func:`make_plan`.

    Args:
        info: the input's probe (:class:`~dubber.media.probe.VideoInfo`).
        tracks: its analysis.
        dub_path: the dub track.
        cfg: the run's :class:`~dubber.config.Config`.
        progress: called with frames done while the banks are built.
        weights_dir: where the driver's weights are (default: the weights folder).
        track_dubs: track id -> that character's own dub (stems), instead of ``dub_path``.
        mouths: the run's :class:`~dubber.mouth.target.DubMouths` when the caller has one
            (the dub is then recognised once for the plan and the generator's cues).
    """
    from dubber.media.probe import frame_times
    from dubber.mouth.target import DubMouths

    per_track = dubbed_frames(tracks)
    if not per_track:
        return {}, {}
    banks = dubbed_banks(info, tracks, cfg, per_track, progress=progress)
    if cfg.mouth.other_shots:
        from dubber.mouth.actors import pool_banks

        banks = pool_banks(banks, cfg.mouth.link_shape, cfg.mouth.link_colour,
                           cfg.mouth.other_frames)
    if mouths is None:
        mouths = DubMouths(dub_path, frame_times(info), weights_dir, track_dubs)
    return make_plan(tracks, banks, mouths.for_track, cfg.mouth, per_track), banks
