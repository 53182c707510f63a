"""``dub check-sync``: is the speaker on screen in sync with this audio?

:func:`check_sync` analyses the video's faces (the analysis pass, no speaker choice),
scores every readable face track against the audio (the video's own by default) with the
sync model, and judges each *segment*: a shot, or a part of at most
:data:`SEGMENT_SECONDS` of a longer one. In a segment with speech, the speaker is the
track whose lips match the audio best (highest confidence at any offset); the segment is

- ``in sync`` when that confidence reaches ``min_confidence`` (with a minimum that stands
  out of its curve: ``min_sharpness``) at an offset within ``max_offset`` frames (25 fps)
  of 0, and the same holds for that track over its whole shot (a file's sound sits at one
  offset for a whole shot: a part of a shot that matches while the shot as a whole does
  not is a chance match of a few seconds of lips with another voice);
- ``out of sync`` when it is confident at another offset (the audio is shifted), or no
  face follows the audio at all (another voice, another language's timing);
- ``no speech`` when the audio is silent there; ``no face`` when no face is readable.

The overall verdict weighs segments by their speech frames: the share of speech frames
(in segments with a readable face) that are in sync; ``in sync`` when it reaches
``min_share``. Thresholds were calibrated on never-trained videos (weights/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dubber.errors import InputError
from dubber.sync.features import RATE
from dubber.sync.score import OffsetScore, SyncCurves, span_score, speech_frames

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 8.0  # longer shots are judged in parts of at most this long
MIN_WINDOWS = 12  # a track needs this many readable speech windows in a segment


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the verdicts (calibrated; see weights/README.md)."""

    min_confidence: float = 0.06  # LSE-C-style confidence for a segment to count as synced
    # |offset| in 25 fps frames still called in sync: 2 = 80 ms, inside the acceptability
    # range of broadcast practice (ITU-R BT.1359: audio up to 90 ms early, 185 ms late); the
    # talking clips of the test set sit -2 .. +2 frames off by this model's measure.
    max_offset: int = 2
    min_share: float = 0.5  # share of speech frames in sync for the overall verdict
    # the confidence's minimum must also stand out of its curve (OffsetScore.sharpness):
    # a segment of a few dozen windows of unrelated speech can dip deep by chance, at 1.5
    # times the curve's spread or less on the calibration videos; lips in sync 1.9 and up
    min_sharpness: float = 1.7


@dataclass(frozen=True)
class SegmentResult:
    """One judged segment.

    Attributes:
        shot: index of the shot in the video.
        start, end: inclusive video frame range.
        track: the speaker's track id (None: no readable face).
        offset_frames: the audio's lag behind the lips in the video's own frames.
        offset_ms: the same in milliseconds (negative: the audio is early).
        confidence, distance: LSE-C- and LSE-D-style figures of the speaker.
        sharpness: how far that confidence stands out of the curve's spread.
        speech_frames: video frames of the segment on which the audio speaks.
        verdict: ``in sync``, ``out of sync``, ``no speech`` or ``no face``.
    """

    shot: int
    start: int
    end: int
    track: int | None
    offset_frames: int | None
    offset_ms: float | None
    confidence: float | None
    distance: float | None
    speech_frames: int
    verdict: str
    sharpness: float | None = None


@dataclass(frozen=True)
class SyncReport:
    """The result of :func:`check_sync` (``--json`` prints :meth:`to_json`)."""

    video: str
    audio: str
    frame_rate: float
    frames: int
    segments: tuple[SegmentResult, ...]
    speech_frames: int  # speech frames in segments with a readable face
    in_sync_frames: int
    verdict: str  # in sync, out of sync, no speech, no face
    settings: CheckSettings = field(default_factory=CheckSettings)

    @property
    def share_in_sync(self) -> float:
        return self.in_sync_frames / self.speech_frames if self.speech_frames else 0.0

    @property
    def judged(self) -> tuple[SegmentResult, ...]:
        """The segments with a verdict on sync (speech and a readable face)."""
        return tuple(s for s in self.segments if s.verdict in ("in sync", "out of sync"))

    @property
    def median_offset_ms(self) -> float | None:
        """The median offset over the judged segments (None when none is judged)."""
        offs = [s.offset_ms for s in self.judged if s.offset_ms is not None]
        return float(np.median(offs)) if offs else None

    @property
    def exit_code(self) -> int:
        """0 in sync; 1 otherwise (out of sync, no speech, nothing readable)."""
        return 0 if self.verdict == "in sync" else 1

    def line(self) -> str:
        """One line for a terminal."""
        if self.verdict in ("no speech", "no face"):
            why = ("the audio has no speech" if self.verdict == "no speech"
                   else "no face on screen can be read while the audio speaks")
            return f"sync: {self.verdict} ({why})"
        judged, offset = self.judged, self.median_offset_ms
        med = f", median offset {offset:+.0f} ms" if offset is not None else ""
        return (f"sync: {self.verdict}: {100 * self.share_in_sync:.0f}% of "
                f"{self.speech_frames} speech frames in sync, "
                f"{sum(s.verdict == 'in sync' for s in judged)}/{len(judged)} segments{med}")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["share_in_sync"] = round(self.share_in_sync, 4)
        d["segments"] = [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
            for s in d["segments"]]
        return d

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` atomically."""
        import os

        from dubber.files import temp_beside

        path = Path(path)
        tmp = temp_beside(path, ".json")
        try:
            tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def segments_of(shots, fps: float) -> list[tuple[int, int, int]]:
    """(shot index, first, last) parts of at most SEGMENT_SECONDS."""
    out = []
    longest = max(1, int(round(SEGMENT_SECONDS * fps)))
    for i, sh in enumerate(shots):
        n = sh.end - sh.start + 1
        parts = max(1, int(np.ceil(n / longest)))
        bounds = np.linspace(sh.start, sh.end + 1, parts + 1).round().astype(int)
        out += [(i, int(a), int(b) - 1) for a, b in zip(bounds[:-1], bounds[1:])]
    return out


def _rows(curves: SyncCurves, t0: float, t1: float) -> slice:
    """Grid rows of ``curves`` between two times (seconds)."""
    a = int(np.ceil(t0 * RATE - 1e-6)) - curves.start
    b = int(np.floor(t1 * RATE + 1e-6)) - curves.start
    return slice(max(a, 0), max(min(b + 1, len(curves.dist)), 0))


def _synced(sc: OffsetScore | None, s: CheckSettings) -> bool:
    return (sc is not None and sc.confidence >= s.min_confidence
            and sc.sharpness >= s.min_sharpness and abs(sc.offset) <= s.max_offset)


def judge_segment(scores: dict[int, OffsetScore], speech: int, s: CheckSettings,
                  whole: dict[int, OffsetScore | None] | None = None):
    """(track, score, verdict) of one segment from its tracks' scores (and, when given,
    each track's score over its whole shot)."""
    if speech == 0:
        return None, None, "no speech"
    if not scores:
        return None, None, "no face"
    tid, sc = max(scores.items(), key=lambda kv: kv[1].confidence)
    ok = _synced(sc, s) and (whole is None or _synced(whole.get(tid), s))
    return tid, sc, "in sync" if ok else "out of sync"


def report_from_curves(video: str, audio: str, fps: float, times: np.ndarray, shots, tracks,
                       curves: dict[int, SyncCurves], speech_grid: np.ndarray,
                       s: CheckSettings) -> SyncReport:
    """Judge every segment (see the module docstring) from precomputed curves.

    Args:
        times: shape = (N,) the video frames' times (s from the first frame).
        speech_grid: shape = (>= N / fps * RATE,), bool: the audio speaks on grid frame k.
    """
    results = []
    n_speech = n_sync = 0
    whole = {tid: span_score(c) for tid, c in curves.items()}  # a track lies in one shot
    for shot_i, a, b in segments_of(shots, fps):
        t0, t1 = times[a], times[b]
        g = np.round(times[a: b + 1] * RATE).astype(int)
        sp_frames = int(speech_grid[np.clip(g, 0, len(speech_grid) - 1)].sum()) if len(
            speech_grid) else 0
        scores = {}
        for t in tracks:
            if t.id not in curves or t.last < a or t.first > b:
                continue
            c = curves[t.id]
            sc = span_score(c, _rows(c, t0, t1))
            if sc is not None and sc.windows >= MIN_WINDOWS:
                scores[t.id] = sc
        tid, sc, verdict = judge_segment(scores, sp_frames, s, whole)
        if verdict in ("in sync", "out of sync"):
            n_speech += sp_frames
            n_sync += sp_frames if verdict == "in sync" else 0
        results.append(SegmentResult(
            shot_i, a, b, tid,
            None if sc is None else int(round(sc.offset * fps / RATE)),
            None if sc is None else sc.offset_ms,
            None if sc is None else sc.confidence,
            None if sc is None else sc.distance,
            sp_frames, verdict, None if sc is None else sc.sharpness))
    if n_speech:
        verdict = "in sync" if n_sync / n_speech >= s.min_share else "out of sync"
    elif any(r.verdict == "no face" for r in results):
        verdict = "no face"
    else:
        verdict = "no speech"
    return SyncReport(video, audio, fps, len(times), tuple(results), n_speech, n_sync, verdict,
                      s)


def check_sync(video: str | Path, audio: str | Path | None = None, cfg=None,
               weights_dir=None, settings: CheckSettings | None = None, progress=None,
               analysis=None) -> SyncReport:
    """Is the speaker on screen in sync with ``audio`` (default: the video's own)?

    Args:
        video: any video dubber reads.
        audio: an audio file, or a video whose audio is used; None = ``video``'s own.
        cfg: a :class:`~dubber.config.Config` (faces analysis settings, sync weights).
        weights_dir: the weights folder (default ``$DUBBER_WEIGHTS``, else ``weights/``).
        settings: the verdict thresholds.
        progress: called with video frames analysed.
        analysis: (Tracks with lips, frame times, VideoInfo) already made for ``video``
            (:func:`dubber.sync.data.analyse_tracks`).

    Raises:
        InputError: unreadable or corrupt video, no audio stream, audio with no samples,
            no readable face anywhere.
        WeightsError: the sync model's weights are missing or damaged.
    """
    from dubber.config import load_config
    from dubber.media.audio import AudioTrack
    from dubber.media.probe import probe
    from dubber.sync.data import analyse_tracks

    cfg = cfg or load_config("fast")
    info = probe(video) if analysis is None else analysis[2]
    src = Path(audio) if audio else Path(video)
    own = src.resolve() == Path(video).resolve()  # read as it plays with the picture
    try:
        track = AudioTrack(src, from_picture=own)
    except InputError as exc:
        if audio is None and "no audio stream" in str(exc):
            raise InputError(f"{video} has no audio stream; give the audio to check with "
                             "--audio") from None
        raise
    try:
        model = _model(cfg, weights_dir)
        if analysis is None:
            analysis = analyse_tracks(video, cfg, info, progress)
        if not any(t.lips is not None and not np.isnan(t.lips).all()
                   for t in analysis[0].tracks):
            raise InputError(f"no face in {video} that the face mesh can read: nothing to "
                             "check the audio against")
        return check_analysis(analysis, track, model, settings, str(video), str(src))
    finally:
        track.close()


def check_wanted(check: bool, report_path, cfg) -> bool:
    """Whether a dub ends with the sync check: asked for (``check``), except after a
    pass-through, which changes no mouth (checking it would cost a second analysis of the
    whole picture for nothing the run did); always when a report is asked for."""
    return bool(report_path) or (bool(check) and not cfg.runtime.passthrough)


def check_line(video, audio, cfg, weights_dir=None, report_path=None, progress=None) -> str:
    """The sync check that ends a dub (``dub``, and ``dub batch`` with ``check: true``): its
    one line, the full report written to ``report_path``. A check that cannot run (no
    readable face in ``video``) says so in the line and fails nothing."""
    try:
        rep = check_sync(video, audio, cfg, weights_dir, progress=progress)
    except InputError as exc:
        return f"sync: not checked ({exc})"
    if report_path:
        rep.save(report_path)
        return rep.line() + f"; report {report_path}"
    return rep.line()


def _model(cfg, weights_dir):
    from dubber.sync.speaker import load_sync_model

    return load_sync_model(cfg, weights_dir)


def check_analysis(analysis, audio, model, settings: CheckSettings | None = None,
                   video: str = "", audio_name: str = "") -> SyncReport:
    """:func:`check_sync` on an analysis already made and any audio.

    Args:
        analysis: (Tracks with lips, frame times, VideoInfo).
        audio: 16 kHz mono float32 array, or an :class:`~dubber.media.audio.AudioTrack`.
        model: the :class:`~dubber.sync.model.LipSyncNet`.
    """
    from dubber.sync import speaker as sync_speaker
    from dubber.sync.features import mel_span
    from dubber.sync.score import loud_level, track_curves

    tracks, times, info = analysis
    s = settings or CheckSettings()
    seqs = sync_speaker.sequences(tracks.tracks, times)
    loud = loud_level(audio)
    curves = {tid: track_curves(model, q, audio, loud_db=loud) for tid, q in seqs.items()}
    k = int(np.ceil(times[-1] * RATE)) + 2 if len(times) else 0
    speech = speech_frames(mel_span(audio, 0, 4 * k).numpy(), loud) if k else np.zeros(0, bool)
    return report_from_curves(video, audio_name, float(info.frame_rate), times, tracks.shots,
                              tracks.tracks, curves, speech, s)
