"""The analysis pass: frames in, a :class:`~dubber.faces.tracks_file.Tracks` out.

Steps, per frame of the chunks: (1) shot-cut detection on the analysis copy, (2) face
detection (whole frame, tiles, windows around known faces), (3) online track association,
(4) face mesh on a full-resolution crop of every detected face -> lip aperture. Then, for
the whole clip: (5) tracks cut at shots, bridged, filtered, smoothed, (6) speaker windows
from the original audio, (7) the ``--face`` choice. The result is cached by input content
and settings (:mod:`dubber.faces.cache`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from dubber.chunk import Chunk
from dubber.config import Config, FacesConfig
from dubber.errors import InputError
from dubber.faces import speaker
from dubber.faces.detect import Detection, make_detector
from dubber.faces.landmarks import MeshPool, lip_aperture
from dubber.faces.orient import box_to_coded, box_to_upright, upright
from dubber.faces.shots import ShotDetector, shots_from_cuts
from dubber.faces.tiles import FrameDetector, resize_for_detection
from dubber.faces.track import Tracker, finalize_tracks
from dubber.faces.tracks_file import Shot, Track, Tracks, Window
from dubber.faces.yuv import crop_rgb
from dubber.media.color import ColorSpec
from dubber.sync.features import MESH_POINTS
from dubber.mouth.params import mouth_params

if TYPE_CHECKING:
    from dubber.media.probe import VideoInfo

log = logging.getLogger(__name__)

AUDIO_RATE = 16000
# Detection images keep at least this many pixels on their shorter side: the detector
# itself looks at 192x192, and smaller images only lose faces (and invent some).
MIN_DETECT_SIDE = 256


@dataclasses.dataclass
class AnalysisStats:
    """What the pass cost (filled by :func:`analyze_chunks` when given one)."""

    frames: int = 0
    seconds: float = 0.0
    detector_calls: int = 0
    mesh_calls: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def analyze_chunks(
    chunks: Iterable[Chunk],
    width: int,
    height: int,
    frame_rate: Fraction,
    cfg: FacesConfig,
    audio,
    analysis_scale: float,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    stats: AnalysisStats | None = None,
    rotation: int = 0,
    color: ColorSpec | None = None,
    sync_model=None,
    select_speakers: bool = True,
) -> Tracks:
    """Run the analysis over decoded chunks.

    Args:
        chunks: consecutive chunks from frame 0; ``analysis`` (RGB at ``analysis_scale``)
            and ``frames`` (full resolution, for the mesh crops) are read.
        width, height: full-resolution coded size.
        frame_rate: nominal frame rate (for the shot detector and window lengths).
        cfg: the faces configuration.
        audio: the ORIGINAL soundtrack at 16 kHz mono: an array of shape (S,) float32, or an
            :class:`~dubber.media.audio.AudioTrack`; None when the video has none (the
            largest face is taken, with a warning).
        analysis_scale: the scale of ``chunk.analysis``.
        device: torch device for the s3fd detector.
        progress: called with the number of frames done after each chunk.
        stats: filled with timings when given.
        rotation: the video's display rotation (degrees counter-clockwise); faces are
            detected and meshed upright, boxes come back in coded pixels.
        color: colour matrix and range of ``frames`` (default: guessed from the size).
        sync_model: the :class:`~dubber.sync.model.LipSyncNet` that picks the speaker
            (``faces.speaker_cue: sync``; default: the shipped one).
        select_speakers: False leaves every shot without a speaker (``dub check-sync``
            scores the tracks itself).
    """
    t_start = time.perf_counter()
    fps = float(frame_rate)
    detector = make_detector(cfg.detector, cfg.min_score, device)
    close = make_detector(cfg.detector, cfg.min_score, device, close_range=True)
    scale = detection_scale(cfg.detect_scale, width, height)
    frame_det = FrameDetector(detector, scale, cfg.tile_size, cfg.tile_overlap,
                              cfg.tile_every, cfg.roi_scale, cfg.full_every, close)
    shot_det = ShotDetector(fps, cfg.cut_threshold, cfg.min_shot_frames)
    tracker = Tracker(cfg.match_iou, cfg.max_gap)
    lips_meter = _LipMeter(width, height, cfg.min_face_size * min(width, height) * 0.75,
                           rotation, color)
    times: list[np.ndarray] = []
    n = 0
    for chunk in chunks:
        times.append(chunk.times)
        for i, idx in enumerate(chunk.frame_indices.tolist()):
            # 1-3. cuts, faces, tracks
            image = _detection_image(chunk, i, analysis_scale, scale)
            frame_det.scale = image.shape[1] / width  # exact, after rounding to even sizes
            cut = shot_det.push(idx, image)
            known = [box_to_upright(b, rotation, width, height) for b in tracker.live_boxes(idx)]
            dets = frame_det.detect(upright(image, rotation), known, scan=(cut is not None))
            if rotation:
                dets = [Detection(box_to_coded(d.box, rotation, width, height), d.score)
                        for d in dets]
            tracker.update(idx, dets)
            # 4. lips of every face detected on this frame
            for k in tracker.seen_at(idx):
                lips_meter.measure(k, tracker.tracks[k].last_box, chunk, i, idx)
            lips_meter.meshes.keep_only(tracker.live)
            n = idx + 1
        if progress:
            progress(n)
    lips_meter.meshes.close()
    for d in (detector, close):
        if hasattr(d, "close"):
            d.close()
    if n == 0:
        raise InputError("the video has no frames to analyse")

    shots = shots_from_cuts(shot_det.cuts, n)
    segments = finalize_tracks(
        tracker.tracks, shots, (width, height), cfg.max_gap, cfg.min_track_frames,
        cfg.min_face_size, cfg.smooth_center, cfg.smooth_size,
    )
    tracks = []
    for tid, seg in enumerate(segments):
        ap = lips_meter.apertures.get(seg.source, {})
        aperture = np.array([ap.get(f, np.nan) for f in range(seg.first, seg.last + 1)])
        lips = _points_array(lips_meter.points.get(seg.source, {}), seg.first, seg.last)
        mp = lips_meter.mouths.get(seg.source, {})
        mouth = np.array([mp.get(f, (np.nan,) * 3) for f in range(seg.first, seg.last + 1)],
                         np.float64).reshape(-1, 3)
        tracks.append(Track(tid, seg.first, seg.last, seg.boxes, seg.scores, aperture,
                            np.zeros(len(aperture)), lips=lips, mouth=mouth))
    frame_times = np.concatenate(times)[:n]
    if select_speakers:
        tracks, shot_list = _select_speakers(tracks, shots, audio, frame_times, fps, cfg,
                                             sync_model)
    else:
        shot_list = [Shot(a, b) for a, b in shots]
    result = Tracks(width, height, Fraction(frame_rate), n, tuple(tracks), tuple(shot_list),
                    has_audio=audio is not None, settings=settings_of(cfg), rotation=rotation)
    if stats is not None:
        stats.frames = n
        stats.seconds = time.perf_counter() - t_start
        stats.detector_calls = frame_det.calls
        stats.mesh_calls = lips_meter.meshes.calls
    log.info("analysed %d frames: %d shots, %d tracks", n, len(shot_list), len(tracks))
    return result


class _LipMeter:
    """Face mesh on a full-resolution crop of each detected face -> lip aperture and mouth
    parameters (:func:`dubber.mouth.params.mouth_params`) per frame.

    One mesh graph per raw track (:class:`MeshPool`: its tracking state follows the face);
    faces smaller than ``min_side`` pixels are skipped (too small to be re-rendered anyway).
    """

    def __init__(self, width: int, height: int, min_side: float, rotation: int,
                 color: ColorSpec | None) -> None:
        self.min_side = min_side
        self.color = color
        self.meshes = MeshPool(width, height, rotation)
        self.apertures: dict[int, dict[int, float]] = {}  # raw track -> frame -> aperture
        # raw track -> frame -> the sync model's mesh points, shape (K, 2) float32
        self.points: dict[int, dict[int, np.ndarray]] = {}
        self.mouths: dict[int, dict[int, tuple]] = {}  # raw track -> frame -> mouth params

    def measure(self, k: int, box, chunk: Chunk, i: int, idx: int) -> None:
        x0, y0, x1, y1 = box
        if np.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0)) < self.min_side:
            return
        pts = self.meshes.points(k, chunk.frames, i, box, self.color)
        if pts is not None:
            self.apertures.setdefault(k, {})[idx] = lip_aperture(pts)
            self.points.setdefault(k, {})[idx] = pts[list(MESH_POINTS)].astype(np.float32)
            self.mouths.setdefault(k, {})[idx] = tuple(float(v) for v in mouth_params(pts))


def _points_array(points: dict[int, np.ndarray], first: int, last: int) -> np.ndarray:
    """Frames ``first .. last`` of one raw track's mesh points, shape (n, K, 2) float32,
    NaN where the mesh found no face."""
    out = np.full((last - first + 1, len(MESH_POINTS), 2), np.nan, np.float32)
    for f, p in points.items():
        if first <= f <= last:
            out[f - first] = p
    return out


def detection_scale(detect_scale: float, width: int, height: int) -> float:
    """The scale faces are detected at: ``detect_scale``, raised so that the shorter side
    keeps at least ``MIN_DETECT_SIDE`` pixels (a 224-pixel video is not shrunk to 56)."""
    return min(1.0, max(detect_scale, MIN_DETECT_SIDE / min(width, height)))


def _detection_image(chunk: Chunk, i: int, analysis_scale: float, detect_scale: float):
    if chunk.analysis is not None and analysis_scale > 0:
        return resize_for_detection(chunk.analysis[i], detect_scale / analysis_scale)
    lay = chunk.frames.layout
    full = crop_rgb(chunk.frames, i, (0, 0, lay.width, lay.height))
    return resize_for_detection(full, detect_scale)


def _select_speakers(
    tracks: list[Track],
    shots: list[tuple[int, int]],
    audio,
    times: np.ndarray,
    fps: float,
    cfg: FacesConfig,
    sync_model=None,
) -> tuple[list[Track], list[Shot]]:
    if audio is None:
        log.warning("no original audio: selecting the largest face of each shot")
    s = speaker.SpeakerSettings(
        window=max(8, round(cfg.speaker_window * fps)),
        max_lag=round(cfg.speaker_max_lag * fps),
        min_corr=cfg.speaker_min_corr if cfg.speaker_cue == "envelope" else cfg.speaker_min_sync,
        floor_db=cfg.speech_floor_db,
        min_run=max(1, round(cfg.min_speaking * fps)),
    )
    env = curves = None
    if audio is not None and cfg.speaker_cue == "envelope":
        env = speaker.speech_envelope(audio, AUDIO_RATE, times)
    elif audio is not None:
        from dubber.sync import speaker as sync_speaker

        model = sync_model if sync_model is not None else sync_speaker.load_sync_model()
        curves = sync_speaker.curves_of(model, sync_speaker.sequences(tracks, times), audio)
    speaking = {t.id: np.zeros(len(t)) for t in tracks}
    out_shots = []
    for start, end in shots:
        in_shot = [t for t in tracks if t.first >= start and t.last <= end]
        if not in_shot:
            out_shots.append(Shot(start, end))
            continue
        if audio is None:
            largest = max(in_shot, key=lambda t: t.size)
            out_shots.append(Shot(start, end, largest.id))
            continue
        if curves is not None:
            scores = _sync_scores(in_shot, curves, times, start, end, cfg, s.min_run)
        else:
            aps = {t.id: (t.first, t.aperture) for t in in_shot}
            scores = speaker.score_shot(start, end, aps, env, s)
        for t in in_shot:
            speaking[t.id] = scores[t.id][t.first - start: t.last - start + 1]
        runs = speaker.speaking_runs(start, scores, s.min_corr, s.min_run)
        windows = tuple(Window(a, b, tid) for a, b, tid in runs)
        frames_by = {}
        for w in windows:
            frames_by[w.track] = frames_by.get(w.track, 0) + w.end - w.start + 1
        sel = max(frames_by, key=frames_by.get) if frames_by else None
        out_shots.append(Shot(start, end, sel, windows))
    tracks = [dataclasses.replace(t, speaking=speaking[t.id]) for t in tracks]
    return tracks, out_shots


def _sync_scores(in_shot: list[Track], curves: dict, times: np.ndarray, start: int, end: int,
                 cfg: FacesConfig, min_run: int) -> dict[int, np.ndarray]:
    """Per-frame sync scores (``start .. end``) of a shot's tracks: 0 off the track, and 0
    where its lips stay still for ``min_run`` frames or longer (:func:`speaker.lips_active`:
    a span's score spreads over all its frames, a shut mouth inside it does not speak)."""
    from dubber.sync import speaker as sync_speaker
    from dubber.sync.features import RATE

    span = max(8, round(cfg.speaker_window * RATE))
    local, holds = {}, {}
    for t in in_shot:
        sc, hold = np.zeros(end - start + 1), np.zeros(end - start + 1)
        if t.id in curves:
            tt = times[t.first: t.last + 1]
            sc[t.first - start: t.last - start + 1] = sync_speaker.frame_scores(
                curves[t.id], tt, span)
            hold[t.first - start: t.last - start + 1] = sync_speaker.frame_hold(
                curves[t.id], tt, span, cfg.speaker_min_sync)
        local[t.id], holds[t.id] = sc, hold
    # a face in sync over its whole shot keeps the role where its span score dips
    held = sync_speaker.hold_speaker(local, holds)
    # between faces, the one whose lips are shut for half that long does not speak there
    moving = {t.id: speaker.lips_active(t.aperture, t.first, start, end, max(1, min_run // 2))
              for t in in_shot}
    held = sync_speaker.prefer_moving(held, moving)
    return {t.id: held[t.id] * speaker.lips_active(t.aperture, t.first, start, end, min_run)
            for t in in_shot}


def apply_face_choice(tracks: Tracks, face: str) -> Tracks:
    """Override the speaker choice: ``speaker`` (keep), ``largest``, ``all`` or a track id.

    ``largest`` and an id select that track on every frame it is on; ``all`` selects every
    track (one window per track, so :meth:`Tracks.speakers_at` returns them all).
    """
    if face == "speaker":
        return tracks
    shots = []
    for sh in tracks.shots:
        in_shot = [t for t in tracks.tracks if t.first >= sh.start and t.last <= sh.end]
        if face == "all":
            wins = tuple(Window(t.first, t.last, t.id) for t in in_shot)
            shots.append(Shot(sh.start, sh.end, in_shot[0].id if in_shot else None, wins))
        elif face == "largest":
            sel = max(in_shot, key=lambda t: t.size).id if in_shot else None
            shots.append(Shot(sh.start, sh.end, sel, ()))
        else:
            tid = int(face)
            if tid not in [t.id for t in tracks.tracks]:
                from dubber.errors import UsageError

                raise UsageError(f"--face {tid}: no such track (see `dub inspect`)")
            sel = tid if any(t.id == tid for t in in_shot) else None
            shots.append(Shot(sh.start, sh.end, sel, ()))
    return dataclasses.replace(tracks, shots=tuple(shots))


def settings_of(cfg: FacesConfig) -> dict:
    """The settings that change the analysis (everything but the ``face`` choice)."""
    d = dataclasses.asdict(cfg)
    d.pop("face", None)
    return d


def analysis_models(cfg: Config) -> dict[str, str]:
    """The sha256 of each weight the analysis runs (the sync model chooses the speakers,
    the mouth driver calibrates them), from the folders they load from: new weights make a
    new analysis, not a stale cached one."""
    from dubber.models.registry import read_manifest, resolve_weights_dir
    from dubber.mouth.driver import WEIGHTS_NAME
    from dubber.sync.speaker import sync_weights_folder

    out: dict[str, str] = {}
    for name, folder in ((cfg.models.weights.lip_sync, sync_weights_folder(cfg)),
                         (WEIGHTS_NAME, resolve_weights_dir(None))):
        try:
            entry = read_manifest(folder).get(name)
        except Exception:  # noqa: BLE001 - loading the model reports the real problem
            entry = None
        if entry is not None:
            out[name] = entry.sha256
    return out


def analyze(
    video: str | Path,
    cfg: Config,
    audio_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    info: VideoInfo | None = None,
) -> Tracks:
    """Analyse a video (or reuse the cached analysis) and apply ``cfg.faces.face``.

    Args:
        video: the input film.
        cfg: the run's configuration.
        audio_path: the ORIGINAL soundtrack when it is not the video's own audio.
        cache_dir: where analyses are cached (default: :func:`dubber.faces.cache.cache_dir`).
        progress: called with frames done.
        info: the video's probe, when the caller has it (a probe scans the whole file).
    """
    from dubber.faces import cache
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    if info is None:
        info = probe(video)  # first: a bad input gets the media layer's message
    key = cache.cache_key(video, {**settings_of(cfg.faces), "models": analysis_models(cfg)},
                          audio_path)
    cached = cache.load_cached(key, cache_dir)
    if cached is not None:
        log.info("reusing the cached analysis %s", key[:12])
        return apply_face_choice(cached, cfg.faces.face)
    audio = open_original_audio(audio_path or video, required=bool(audio_path))
    scale = detection_scale(cfg.faces.detect_scale, info.width, info.height)
    chunks = read_chunks(info, cfg.media.chunk_frames, scale, full=True,
                         queue_depth=cfg.media.queue_depth, threads=cfg.media.decode_threads)
    try:
        result = analyze_chunks(
            chunks, info.width, info.height, info.frame_rate, cfg.faces, audio, scale,
            device=cfg.runtime.device, progress=progress, rotation=info.rotation,
            color=ColorSpec.from_names(info.color.matrix, info.color.range, info.width,
                                       info.height))
        if audio is not None:
            result = _calibrate_mouths(result, video, audio)
    finally:
        chunks.close()
        if audio is not None:
            audio.close()
    result = dataclasses.replace(result, key=key)
    cache.store(result, cache_dir)
    # Run with exactly what the tracks file holds (boxes rounded as written), so a first
    # run and every later run from the cache or an exported file give the same pixels.
    result = Tracks.from_json(result.to_json())
    return apply_face_choice(result, cfg.faces.face)


def _calibrate_mouths(tracks: Tracks, video: str | Path, audio) -> Tracks:
    """Each speaking actor's mouth calibration on the original audio (dubber.mouth); the
    analysis goes on without it (with a warning) when the mouth driver cannot run."""
    from dubber.errors import WeightsError
    from dubber.mouth.calibrate import calibrate_tracks
    from dubber.mouth.truth import video_frame_times

    try:
        return calibrate_tracks(tracks, audio, video_frame_times(video))
    except WeightsError as exc:
        log.warning("no mouth calibration: %s", exc)
        return tracks


def open_original_audio(path: str | Path, required: bool = False):
    """The original soundtrack as a disk-backed 16 kHz :class:`~dubber.media.audio.AudioTrack`
    (close it after use), or None with a warning when ``path`` has no audio and
    ``required`` is False. A film's own sound is read as it plays with the film's picture
    (from the sample its first frame shows with)."""
    from dubber.media.audio import AudioTrack

    try:
        return AudioTrack(path, sample_rate=AUDIO_RATE, from_picture=True)
    except InputError as exc:
        if required:
            raise
        log.warning("%s", exc)
        return None


def tracks_for_run(
    video: str | Path,
    cfg: Config,
    tracks_file: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    info: VideoInfo | None = None,
) -> Tracks:
    """What ``dub`` and ``dub inspect`` use: an edited tracks file when given (checked
    against the video's size and length), else the (cached) analysis; ``cfg.faces.face``
    applied either way. ``info``: the video's probe, when the caller already has it."""
    if not tracks_file:
        return analyze(video, cfg, progress=progress, info=info)
    from dubber.media.probe import probe

    tracks = Tracks.load(tracks_file)
    if info is None:
        info = probe(video)
    if (tracks.width, tracks.height, tracks.frame_count) != (
        info.width, info.height, info.frame_count
    ):
        raise InputError(
            f"{tracks_file} describes a {tracks.width}x{tracks.height} video of "
            f"{tracks.frame_count} frames, but {video} is {info.width}x{info.height} with "
            f"{info.frame_count} frames: it was made for another video"
        )
    return apply_face_choice(tracks, cfg.faces.face)
