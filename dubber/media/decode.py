"""Chunked decoding: a film streams through in runs of N frames, in bounded memory.

A background thread decodes with PyAV (FFmpeg, frame-threaded) and hands over
:class:`~dubber.chunk.Chunk` objects through a queue of ``queue_depth`` chunks, so at most
``queue_depth + 1`` chunks of decoded frames exist on the decode side whatever the length
of the film. Frames are copied plane by plane into the input's own planar YUV layout
(:mod:`dubber.media.frames`); an optional reduced-size RGB copy is made in the same pass for
the analysis stages (face detection works on quarter-resolution frames).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from dubber.chunk import Chunk
from dubber.errors import InputError
from dubber.media.frames import FrameBatch, PixelLayout, plane_views
from dubber.media.probe import VideoInfo

log = logging.getLogger(__name__)

# Decoder formats whose planes are already a working layout, byte for byte. The yuvj*
# formats are the full-range twins of yuv*: same planes, only the range flag differs.
_DIRECT = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p"}


def analysis_size(info: VideoInfo, scale: float) -> tuple[int, int]:
    """(width, height) of the analysis copy: ``scale`` of the coded size, even, at least 2."""
    w = max(2, int(round(info.width * scale / 2)) * 2)
    h = max(2, int(round(info.height * scale / 2)) * 2)
    return w, h


def frames_per_chunk(info: VideoInfo, chunk_frames: int, chunk_megabytes: int | None) -> int:
    """``chunk_frames``, lowered so that a chunk's full-resolution frames fit in
    ``chunk_megabytes`` (at least one frame)."""
    if not chunk_megabytes:
        return chunk_frames
    return max(1, min(chunk_frames, chunk_megabytes * 2**20 // info.layout.frame_bytes))


@dataclass(frozen=True)
class StartAt:
    """Where a decode that does not begin with the video's first frame begins (a resumed
    render, a segment rendered on its own)."""

    frame: int  # 0-based index of the first frame to yield
    # The stored pts (stream time base) of the frame before it, ``frame - 1``, as a decode
    # from the start saw it; None: unknown, decode from the start and count frames.
    prev_pts: int | None
    base_pts: int  # the video's first frame's stored pts (chunk pts are relative to it)
    # Seek this many ticks before ``prev_pts`` (it must land on a keyframe at or before it).
    margin: int = 0


def read_chunks(
    info: VideoInfo,
    chunk_frames: int = 16,
    analysis_scale: float = 0.0,
    full: bool = True,
    queue_depth: int = 1,
    threads: int = 0,
    chunk_megabytes: int | None = None,
    start: StartAt | None = None,
    stop_frame: int | None = None,
) -> Iterator[Chunk]:
    """Decode ``info.path`` into consecutive chunks.

    Args:
        info: from :func:`dubber.media.probe.probe`.
        chunk_frames: frames per chunk (the last chunk may be shorter).
        chunk_megabytes: with ``full``, fewer frames per chunk where ``chunk_frames`` of
            them would take more memory than this (see :func:`frames_per_chunk`).
        analysis_scale: if > 0, each chunk carries ``analysis``, an RGB copy of every frame
            at this fraction of the coded size, shape = (N, h, w, 3), uint8.
        full: carry the full-resolution frames (False for an analysis-only pass, which
            then never holds a full-size frame longer than the decoder does).
        queue_depth: chunks decoded ahead of the consumer.
        threads: decoder threads, 0 = FFmpeg's choice.
        start: begin at this frame (seeking to a keyframe before it) instead of the first;
            chunk and frame numbers and pts are those of a decode from the first frame.
        stop_frame: end before this frame index.

    Yields:
        Chunks in presentation order. ``pts`` are relative to the first frame.

    Raises:
        InputError: the file turns out to be corrupt or truncated while decoding.
    """
    if not full and analysis_scale <= 0:
        raise ValueError("nothing to decode: full=False and no analysis copy")
    if full:
        chunk_frames = frames_per_chunk(info, chunk_frames, chunk_megabytes)
    q: queue.Queue = queue.Queue(maxsize=queue_depth)
    stop = threading.Event()
    worker = threading.Thread(
        target=_decode_worker,
        args=(info, chunk_frames, analysis_scale, full, threads, q, stop, start, stop_frame),
        name="dubber-decode",
        daemon=True,
    )
    worker.start()
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode_worker(info, chunk_frames, analysis_scale, full, threads, q, stop, start,
                   stop_frame) -> None:
    try:
        for chunk in _decode(info, chunk_frames, analysis_scale, full, threads, stop, start,
                             stop_frame):
            if not _put(q, chunk, stop):
                return
        _put(q, None, stop)
    except BaseException as exc:  # handed to the consumer, re-raised there
        if isinstance(exc, av.FFmpegError):
            exc = InputError(f"{info.path} is corrupt or truncated: decoding failed "
                             f"({str(exc).splitlines()[0]})")
        _put(q, exc, stop)


class _SeekMissed(Exception):
    """The frame after a seek was not the one asked for: decode from the start instead."""


def _decode(info: VideoInfo, chunk_frames: int, analysis_scale: float, full: bool,
            threads: int, stop: threading.Event, start_at: StartAt | None = None,
            stop_frame: int | None = None) -> Iterator[Chunk]:
    if start_at is not None and start_at.frame > 0 and start_at.prev_pts is not None:
        try:
            yield from _decode_from(info, chunk_frames, analysis_scale, full, threads, stop,
                                    start_at, stop_frame, seek=True)
            return
        except _SeekMissed:
            log.warning("seeking to frame %d of %s missed it; decoding from the start",
                        start_at.frame, info.path)
    yield from _decode_from(info, chunk_frames, analysis_scale, full, threads, stop,
                            start_at, stop_frame, seek=False)


def _decode_from(info, chunk_frames, analysis_scale, full, threads, stop, start_at,
                 stop_frame, seek) -> Iterator[Chunk]:
    layout = info.layout
    small = analysis_size(info, analysis_scale) if analysis_scale > 0 else None
    tb = info.time_base
    nominal = 1 / (info.frame_rate * tb)  # ticks per frame, for frames without a pts
    first = start_at.frame if start_at is not None else 0
    with av.open(str(info.path), metadata_errors="ignore") as container:
        stream = next(s for s in container.streams if s.index == info.stream_index)
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        builder = _ChunkBuilder(layout, chunk_frames, small, full, tb)
        builder.index, builder.next_frame = first // chunk_frames, first
        start = None
        last = None
        index = 0  # frame number of the next decoded frame (without seek)
        if seek:
            container.seek(start_at.prev_pts - start_at.margin, stream=stream, backward=True)
            start, index = start_at.base_pts, None
        for frame in container.decode(stream):
            if stop.is_set():
                return
            pts = frame.pts
            if pts is None:
                pts = last + round(nominal) if last is not None else info.start_pts
            if start is None:
                start = pts
            last = pts
            if index is None:  # after a seek: drop frames up to the one before ``first``
                if pts < start_at.prev_pts:
                    continue
                if pts != start_at.prev_pts:
                    raise _SeekMissed
                index = first
                continue
            if index < first:
                index += 1
                continue
            if stop_frame is not None and index >= stop_frame:
                break
            index += 1
            builder.add(frame, pts - start)
            if builder.full:
                yield builder.take()
        if seek and index is None:
            raise _SeekMissed
        if len(builder):
            yield builder.take()


class _ChunkBuilder:
    """Fills preallocated arrays for one chunk at a time."""

    def __init__(self, layout: PixelLayout, n: int, small: tuple[int, int] | None,
                 full: bool, time_base: Fraction) -> None:
        self.layout, self.n, self.small, self.keep_full = layout, n, small, full
        self.time_base = time_base
        self.index = 0
        self.next_frame = 0
        self._new()

    def _new(self) -> None:
        self.count = 0
        self.pts = np.empty(self.n, np.int64)
        self.frames: list | None = [] if self.keep_full else None
        if self.small:
            w, h = self.small
            self.analysis = np.empty((self.n, h, w, 3), np.uint8)
        else:
            self.analysis = None

    def __len__(self) -> int:
        return self.count

    @property
    def full(self) -> bool:
        return self.count == self.n

    def add(self, frame: av.VideoFrame, rel_pts: int) -> None:
        i = self.count
        self.pts[i] = rel_pts
        if self.frames is not None:
            self.frames.append(to_working_format(frame, self.layout))
        if self.analysis is not None:
            w, h = self.small
            self.analysis[i] = to_rgb(frame, (w, h))
        self.count += 1

    def take(self) -> Chunk:
        n = self.count
        frames = FrameBatch(self.layout, self.frames) if self.frames is not None else None
        chunk = Chunk(
            index=self.index,
            frame_indices=np.arange(self.next_frame, self.next_frame + n, dtype=np.int64),
            pts=self.pts[:n].copy(),
            time_base=self.time_base,
            frames=frames,
            analysis=self.analysis[:n] if self.analysis is not None else None,
        )
        self.index += 1
        self.next_frame += n
        self._new()
        return chunk


def to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """An 8-bit RGB picture of a decoded frame (resized to ``size`` = (width, height) by
    area averaging), full-range YUV read as full range whether its format says so
    (yuvj420p, as H.264 decoders give it) or only its range flag (yuv420p flagged "pc", as
    FFV1 and HEVC decoders give it: swscale reads that flag as limited range unless told)."""
    w, h = size if size is not None else (frame.width, frame.height)
    kw = {"src_color_range": 2} if int(frame.color_range) == 2 else {}  # 2: JPEG / "pc"
    return frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA",
                          **kw).to_ndarray()


def to_working_format(frame: av.VideoFrame, layout: PixelLayout) -> av.VideoFrame:
    """The decoded frame itself when it is already in the working ``layout``; otherwise a
    converted copy (swscale for nv12, p010, rgb, grey, alpha formats; a plane copy for the
    full-range yuvj* formats, whose samples are kept as they are)."""
    name = frame.format.name
    if name == layout.pix_fmt:
        return frame
    if _DIRECT.get(name) == layout.pix_fmt:
        out = av.VideoFrame(frame.width, frame.height, layout.pix_fmt)
        for src, dst in zip(plane_views(frame, layout), plane_views(out, layout)):
            dst[...] = src
    else:
        out = frame.reformat(format=layout.pix_fmt)
    out.pts = frame.pts
    return out
