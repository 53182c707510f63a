"""Resumable renders: a title cut into segments, each encoded to its own file, joined
losslessly at the end.

A segment is a run of whole chunks (``runtime.segment_seconds`` of picture, rounded to
chunks). Each is encoded by its own ffmpeg into a NUT file (video only; NUT keeps every
timestamp exactly), so each starts with a keyframe. When every segment exists, their packets
are copied, unchanged, into one NUT stream that the final ffmpeg muxes with the dub track
exactly as a one-pass render would (``MuxPlan.command(copy_video=True)``).

Beside the output ``OUT`` a hidden folder ``.OUT.parts/`` holds:

- ``lock``: held (``flock``) by the run writing OUT; the kernel drops it when the run dies,
  however it dies, so a run that gets it knows anything else there is left over;
- ``state.sqlite``: what the segments were made from (a fingerprint of the inputs, the
  configuration and the encoder) and one row per segment: its frames, the stored pts of
  its first and last frame, how often it was started and finished;
- ``NNNNN.nut``: finished segments (written to a temporary name, renamed when complete).

``dub --resume`` keeps what matches the fingerprint and renders only the missing segments;
without ``--resume`` the folder and any hidden ``.part`` file of a killed run are removed
first. The folder is removed when OUT is published.

Every segment renders as if the render started at its first frame: stages that carry state
from chunk to chunk (the face mesh's tracking, the generator's reference frames) are reset
at each segment start, in an uninterrupted run too, so a resumed run, or a segment rendered
on another machine, gives the same pixels and the same bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import av

from dubber import __version__
from dubber.chunk import Chunk
from dubber.config import Config
from dubber.errors import OutputError, UsageError
from dubber.media.decode import StartAt, frames_per_chunk, read_chunks
from dubber.media.encode import MuxPlan, VideoWriter
from dubber.media.probe import VideoInfo

log = logging.getLogger(__name__)

SEEK_MARGIN_SECONDS = 2  # seek this far before a resume point (a keyframe before it)


@dataclass(frozen=True)
class Segment:
    """Frames ``start`` (included) to ``stop`` (excluded) of the title."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_segments(info: VideoInfo, cfg: Config) -> list[Segment]:
    """Cut the title into segments of whole chunks, ``runtime.segment_seconds`` long (at
    the average frame rate), the last one shorter."""
    chunk = frames_per_chunk(info, cfg.media.chunk_frames, cfg.media.chunk_megabytes)
    # The average rate, not the nominal one: for variable-rate video that is often the time
    # base's (1000 fps in Matroska), which made segments 40 times too long at 25 fps.
    rate = info.frame_count / info.duration if info.duration > 0 else info.frame_rate
    per = max(1, round(cfg.runtime.segment_seconds * float(rate) / chunk)) * chunk
    n = max(info.frame_count, 1)
    return [Segment(k, s, min(s + per, n)) for k, s in enumerate(range(0, n, per))]


# PyAV cannot put ProRes into the NUT stream that carries the joined segments to ffmpeg
# (its codec check refuses what ffmpeg itself would write): ProRes renders in one pass.
_JOINABLE = ("x264", "x265", "ffv1")


def resumable(cfg: Config) -> bool:
    """Whether a render with ``cfg`` goes through segments (and can be resumed)."""
    return cfg.runtime.segment_seconds > 0 and cfg.encode.codec in _JOINABLE


def parts_dir(output: Path) -> Path:
    """The hidden folder of a render's segments and state, beside its output."""
    return output.parent / f".{output.name}.parts"


def encoder_threads(cfg: Config) -> int:
    return cfg.encode.threads or os.cpu_count() or 1


def fingerprint(info: VideoInfo, plan: MuxPlan, cfg: Config,
                identity: Mapping[str, object] | None = None) -> str:
    """What a segment's bytes depend on: inputs (path, size, mtime), configuration, the
    encoder and its threads, dubber's version, the segments' frames, and what the caller
    adds (the tracks file, the weights)."""
    def stat(p: Path) -> list:
        st = Path(p).stat()
        return [str(Path(p).resolve()), st.st_size, st.st_mtime_ns]

    from dataclasses import asdict

    data = {"input": stat(info.path), "dub": stat(plan.dub_path), "version": __version__,
            "config": asdict(cfg), "threads": encoder_threads(cfg),
            "command": plan.segment_command(Path("x"), encoder_threads(cfg))[1:],
            # the cut itself: segments left by a version that cut elsewhere are not reused
            "segments": [[s.start, s.stop] for s in plan_segments(info, cfg)],
            "extra": dict(identity or {})}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_identity(tracks_file: str | os.PathLike | None,
                 weights_dir: str | os.PathLike | None) -> dict[str, str]:
    """The fingerprint's share of a model render: the tracks file's and the weights
    folder's contents (sha256 of the files, by name)."""
    out: dict[str, str] = {}
    if tracks_file and Path(tracks_file).is_file():
        out["tracks"] = hashlib.sha256(Path(tracks_file).read_bytes()).hexdigest()
    # As dubber.models.registry.resolve_weights_dir (not imported: it pulls in torch).
    folder = Path(weights_dir or os.environ.get("DUBBER_WEIGHTS")
                  or Path(__file__).resolve().parents[1] / "weights")
    manifest = folder / "manifest.yaml"
    if manifest.is_file():
        out["weights"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    return out


class SegmentState:
    """The ``state.sqlite`` of one output: a fingerprint and a row per segment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS segments (
                idx INTEGER PRIMARY KEY, start INTEGER, stop INTEGER,
                frames INTEGER, first_pts INTEGER, last_pts INTEGER,
                starts INTEGER DEFAULT 0, renders INTEGER DEFAULT 0, done INTEGER DEFAULT 0,
                seconds REAL DEFAULT 0);
        """)

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def plan(self, segments: Sequence[Segment]) -> None:
        for s in segments:
            self.db.execute("INSERT OR IGNORE INTO segments (idx, start, stop) VALUES (?,?,?)",
                            (s.index, s.start, s.stop))

    def rows(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM segments ORDER BY idx")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def started(self, index: int, first_pts: int) -> None:
        self.db.execute("UPDATE segments SET starts=starts+1, first_pts=? WHERE idx=?",
                        (first_pts, index))

    def finished(self, index: int, frames: int, last_pts: int, seconds: float) -> None:
        self.db.execute("UPDATE segments SET renders=renders+1, done=1, frames=?, last_pts=?, "
                        "seconds=? WHERE idx=?", (frames, last_pts, seconds, index))


def read_state(output: Path) -> list[dict] | None:
    """The segment rows of an unfinished render of ``output`` (None when there is none);
    for ``dub batch status``."""
    path = parts_dir(output) / "state.sqlite"
    if not path.exists():
        return None
    state = SegmentState(path)
    try:
        return state.rows()
    finally:
        state.close()


class OutputClaim:
    """The right to write ``output``: the parts folder's lock, and leftovers cleaned.

    Args:
        output: the destination.
        resume: keep the segments of an earlier run (that match ``fingerprint``).
        keep: keep the parts folder when the run fails or is interrupted (so that it can be
            resumed); otherwise it is removed, and nothing is left behind.
    """

    def __init__(self, output: Path, resume: bool, keep: bool, shared: bool = False) -> None:
        # shared: one of several processes rendering segments of the same output at once
        # (a distributed runner's segment tasks): nothing is cleaned, nothing removed.
        self.output, self.resume, self.keep, self.shared = output, resume or shared, keep, shared
        self.dir = parts_dir(output)
        self._lock_fd: int | None = None
        self.state: SegmentState | None = None

    def __enter__(self) -> "OutputClaim":
        try:
            self.dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write beside {self.output}: {exc.strerror or exc}") from None
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
                        | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise OutputError(f"another dub is writing {self.output} now; wait for it or "
                              "choose another output") from None
        if self.shared:
            self.state = SegmentState(self.dir / "state.sqlite")
            return self
        remove_orphans(self.output)
        for p in self.dir.iterdir():
            if p.name == "lock":
                continue
            if not self.resume or p.name.startswith("."):  # temporaries are never finished
                _remove(p)
        self.state = SegmentState(self.dir / "state.sqlite")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.state is not None:
            self.state.close()
        if not self.shared and (exc_type is None or not self.keep):
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    def check_fingerprint(self, value: str) -> None:
        old = self.state.meta("fingerprint")
        if old is not None and old != value:
            if self.resume:
                raise UsageError(
                    f"the unfinished render of {self.output.name} was made from other inputs or "
                    "settings; run without --resume to start over")
        if old != value:
            self.state.db.execute("DELETE FROM segments")
            for p in self.dir.glob("*.nut"):
                p.unlink()
            self.state.set_meta("fingerprint", value)


def remove_orphans(output: Path) -> list[Path]:
    """Remove the hidden ``.part`` files a killed one-pass render of ``output`` left beside
    it (call with the parts folder's lock held: no live run is writing them)."""
    found = list(output.parent.glob(f".{output.stem}.*.part{output.suffix}"))
    for p in found:
        log.info("removing %s, left by a render that was killed", p.name)
        _remove(p)
    return found


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def reset_state(stages: Sequence[object], models: object) -> None:
    """Forget what stages carry from chunk to chunk: every stage (and the models) with a
    ``reset()`` method is reset. Called at every segment start."""
    for obj in (*stages, models):
        reset = getattr(obj, "reset", None)
        if callable(reset):
            reset()


def first_pts(info: VideoInfo) -> int:
    """The stored pts of the video's first decoded frame (chunk pts are relative to it)."""
    with av.open(str(info.path), metadata_errors="ignore") as c:
        stream = next(s for s in c.streams if s.index == info.stream_index)
        for frame in c.decode(stream):
            return frame.pts if frame.pts is not None else info.start_pts
    return info.start_pts


def render_segments(
    plan: MuxPlan,
    info: VideoInfo,
    cfg: Config,
    claim: OutputClaim,
    run_chunks: Callable[[Iterator[Chunk], object], int],
    reset: Callable[[], None],
    progress: Callable[[int], None] | None = None,
    identity: Mapping[str, object] | None = None,
    only: Sequence[int] | None = None,
    join: bool = True,
) -> int:
    """Render the missing segments of ``plan.output`` and join them into it.

    Args:
        plan: the output's mux plan.
        info: the probed input.
        cfg: the run's configuration.
        claim: the entered :class:`OutputClaim` of ``plan.output``.
        run_chunks: the render loop, ``run_chunks(chunks, writer)``: every chunk through the
            stages and into ``writer.write`` (the same loop as a one-pass render).
        reset: forget the stages' carried state (see :func:`reset_state`).
        progress: called with the frames of segments already done.
        identity: more of what the pixels depend on, for the fingerprint.
        only: render just these segments (a distributed runner's share); None = all.
        join: join and publish when every segment is done.

    Returns:
        The frames of the title that were decoded in all (equals ``info.frame_count``
        unless the file is truncated), or -1 when segments are still missing.
    """
    segs = plan_segments(info, cfg)
    state = claim.state
    claim.check_fingerprint(fingerprint(info, plan, cfg, identity))
    state.plan(segs)
    base = first_pts(info)
    rows = {r["idx"]: r for r in state.rows()}
    for k, r in rows.items():
        exists = seg_path(claim.dir, k).exists()
        if r["done"] and not exists:  # a finished row whose file has gone is not finished
            state.db.execute("UPDATE segments SET done=0 WHERE idx=?", (k,))
        elif exists and not r["done"]:  # killed between the file's rename and its row
            frames, last = _file_extent(seg_path(claim.dir, k), info)
            state.finished(k, frames, base + last, 0.0)
    rows = {r["idx"]: r for r in state.rows()}
    if progress is not None:
        done = sum(r["frames"] for r in rows.values() if r["done"])
        if done:
            progress(done)
    wanted = set(only) if only is not None else set(range(len(segs)))
    missing = [s for s in segs if not rows[s.index]["done"] and s.index in wanted]
    for run in _consecutive(missing):
        prev = rows.get(run[0].index - 1)
        start_at = None
        if run[0].start > 0:
            margin = int(SEEK_MARGIN_SECONDS / info.time_base)
            prev_pts = prev["last_pts"] if prev and prev["done"] else None
            if prev_pts is None and info.scanned and not info.is_vfr:
                # Constant rate (every interval checked by the probe's scan): frame i is
                # at base + i ticks-per-frame; the decoder checks it finds exactly that.
                prev_pts = base + round((run[0].start - 1) / (info.frame_rate * info.time_base))
            start_at = StartAt(run[0].start, prev_pts, base, margin)
        chunks = read_chunks(info, cfg.media.chunk_frames, analysis_scale=0.0, full=True,
                             queue_depth=cfg.media.queue_depth,
                             threads=cfg.media.decode_threads,
                             chunk_megabytes=cfg.media.chunk_megabytes, start=start_at,
                             stop_frame=run[-1].stop)
        router = _SegmentRouter(plan, claim, run, encoder_threads(cfg), base, reset)
        try:
            with closing(chunks):
                run_chunks(router.feed(chunks), router)
        finally:
            router.abort()
        rows = {r["idx"]: r for r in state.rows()}
        if not all(rows[s.index]["done"] for s in run) or rows[run[-1].index]["frames"] != len(
                run[-1]):
            break  # the file ended early: truncated (the caller reports it)
    rows = {r["idx"]: r for r in state.rows()}
    decoded = sum(r["frames"] or 0 for r in rows.values() if r["done"])
    if not all(r["done"] for r in rows.values()):
        return decoded if decoded < info.frame_count and only is None else -1
    if decoded == info.frame_count and join:
        join_segments(plan, [seg_path(claim.dir, s.index) for s in segs])
    return decoded


class _SegmentRouter:
    """Between the decoder and the render loop: starts a segment (the stages reset, its
    encoder started) when its first chunk is taken, and is the loop's writer, handing each
    chunk to the current segment's encoder; a segment is finished (its file published, its
    row written) when the next one starts or the chunks end."""

    def __init__(self, plan: MuxPlan, claim: OutputClaim, run: Sequence[Segment],
                 threads: int, base: int, reset: Callable[[], None]) -> None:
        self.plan, self.claim, self.state = plan, claim, claim.state
        self.by_start = {s.start: s for s in run}
        self.threads, self.base, self.reset = threads, base, reset
        self.writer: VideoWriter | None = None
        self.segment: Segment | None = None
        self.frames, self.last_pts, self.t0 = 0, 0, 0.0

    def feed(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            first = int(chunk.frame_indices[0])
            if first in self.by_start:
                self._finish()  # every chunk of the segment before has been written
                self._start(self.by_start[first], chunk)
            yield chunk
        self._finish()

    def write(self, chunk: Chunk) -> None:
        self.writer.write(chunk)
        self.frames += len(chunk)
        self.last_pts = self.base + int(chunk.pts[-1])

    def _start(self, seg: Segment, chunk: Chunk) -> None:
        import time

        self.reset()  # before the stages see the segment's first chunk
        self.state.started(seg.index, self.base + int(chunk.pts[0]))
        self.segment, self.frames, self.t0 = seg, 0, time.monotonic()
        self.writer = VideoWriter(
            self.plan, output=seg_path(self.claim.dir, seg.index),
            command=lambda tmp: self.plan.segment_command(tmp, self.threads))
        self.writer.start()

    def _finish(self) -> None:
        import time

        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        writer.finish()
        self.state.finished(self.segment.index, self.frames, self.last_pts,
                            time.monotonic() - self.t0)
        log.debug("segment %d done (%d frames)", self.segment.index, self.frames)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def _file_extent(part: Path, info: VideoInfo) -> tuple[int, int]:
    """(frames, last pts relative to the video's first frame, in its time base) of a
    finished segment file."""
    with av.open(str(part)) as src:
        stream = src.streams.video[0]
        pts = [p.pts for p in src.demux(stream) if p.size]
        tb = stream.time_base
    last = max(pts) * Fraction(tb.numerator, tb.denominator) / info.time_base
    return len(pts), int(last)


def _consecutive(segs: Sequence[Segment]) -> Iterator[list[Segment]]:
    run: list[Segment] = []
    for s in segs:
        if run and s.index != run[-1].index + 1:
            yield run
            run = []
        run.append(s)
    if run:
        yield run


def seg_path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.nut"


class _Joiner(VideoWriter):
    """ffmpeg muxing the segments' packets, copied, with the dub: the output published."""

    def __init__(self, plan: MuxPlan, parts: Sequence[Path]) -> None:
        super().__init__(plan, command=lambda tmp: plan.command(tmp, copy_video=True))
        self.parts = list(parts)

    def _feed(self) -> None:
        # Decode timestamps are made afresh for the joined stream (NUT stores none for a
        # file's first, reordered packets): the i-th packet's dts is the i-th smallest pts,
        # less the largest reorder shift, so dts rises strictly and never passes pts.
        ordered = sorted(pts for part in self.parts for pts in _packet_pts(part))
        shift = 0
        i = 0
        for part in self.parts:
            for pts in _packet_pts(part):
                shift = max(shift, ordered[i] - pts)
                i += 1
        out = av.open(f"pipe:{self._proc.stdin.fileno()}", "w", format="nut")
        try:
            ostream = None
            i = 0
            for part in self.parts:
                with av.open(str(part)) as src:
                    istream = src.streams.video[0]
                    if ostream is None:
                        ostream = out.add_stream_from_template(istream, opaque=True)
                    for packet in src.demux(istream):
                        if packet.size == 0:
                            continue  # the demuxer's end-of-stream marker
                        packet.dts = ordered[i] - shift
                        i += 1
                        packet.stream = ostream
                        out.mux(packet)
            self._take()  # finish() hands over its end marker (abort() stops the wait)
        finally:
            try:
                out.close()
            finally:
                self._proc.stdin.close()


def _packet_pts(part: Path) -> list[int]:
    with av.open(str(part)) as src:
        stream = src.streams.video[0]
        return [p.pts for p in src.demux(stream) if p.size]


def join_segments(plan: MuxPlan, parts: Sequence[Path]) -> Path:
    """Copy the segments' packets, in order, into ``plan.output`` with the dub muxed in."""
    with _Joiner(plan, parts) as joiner:
        return joiner.finish()

