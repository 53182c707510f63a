"""Probe a media file into typed, frozen descriptions.

``probe(path)`` opens the file with PyAV (FFmpeg's demuxers and decoders), decodes the first
video frame to learn what the decoder really produces (pixel format, colour, rotation) and,
by default, scans every video packet without decoding it. The scan gives the exact number
of presented frames, the exact video duration, whether the frame rate varies, and catches
files that are truncated or corrupt before a long render starts on them. It reads the file
once at disk speed; decoding is not needed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dubber.errors import InputError
from dubber.media.frames import PixelLayout

log = logging.getLogger(__name__)

# FFmpeg's enum values (libavutil/pixfmt.h) -> the names ffmpeg's options take.
PRIMARIES = {1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m",
             7: "smpte240m", 8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431",
             12: "smpte432", 22: "jedec-p22"}
TRANSFERS = {1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m",
             7: "smpte240m", 8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4",
             12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
             16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
            7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085",
            12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}
RANGES = {0: "unknown", 1: "tv", 2: "pc"}
_STILL_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "tiff_pipe", "bmp_pipe"}


@dataclass(frozen=True)
class ColorInfo:
    """Colour description as FFmpeg names it; "unknown" where the file does not say."""

    primaries: str = "unknown"  # e.g. bt709, bt2020
    transfer: str = "unknown"  # e.g. bt709, smpte2084 (PQ), arib-std-b67 (HLG)
    matrix: str = "unknown"  # YUV<->RGB matrix, e.g. bt709, bt470bg, bt2020nc
    range: str = "unknown"  # tv (limited) or pc (full)


@dataclass(frozen=True)
class AudioStreamInfo:
    index: int  # stream index in the container
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds; 0.0 when the container does not say
    language: str  # ISO 639-2 tag, "" when untagged


@dataclass(frozen=True)
class SubtitleStreamInfo:
    index: int
    codec: str  # mov_text, subrip, ass, hdmv_pgs_subtitle, ...
    language: str


@dataclass(frozen=True)
class VideoInfo:
    """Everything the render loop and the encoder need to know about an input video.

    Timestamps are in ``time_base`` units. ``duration`` runs from the first frame's
    presentation time to the end of the last frame, so for constant-rate video it is
    ``frame_count / frame_rate``.
    """

    path: Path
    container: str  # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    size_bytes: int
    stream_index: int  # index of the video stream used
    codec: str  # h264, hevc, mpeg4, prores, ...
    width: int  # coded size in pixels (before display rotation)
    height: int
    pix_fmt: str  # what the decoder outputs, e.g. yuv420p, yuvj420p, yuv422p10le
    layout: PixelLayout  # the planar YUV working layout frames are carried in
    color: ColorInfo
    rotation: int  # display rotation in degrees counter-clockwise: 0, 90, 180 or 270
    sample_aspect_ratio: Fraction
    time_base: Fraction  # seconds per pts unit of the video stream
    frame_rate: Fraction  # nominal rate (exact fraction, e.g. 30000/1001)
    start_pts: int  # pts of the first frame
    frame_count: int  # presented frames (exact when scanned, else from the header)
    duration: Fraction  # seconds, first frame start to last frame end
    last_frame_duration: Fraction  # seconds the last presented frame lasts (in duration)
    is_vfr: bool  # frame intervals vary by more than one pts tick
    scanned: bool  # frame_count/duration/is_vfr come from a packet scan
    audio: tuple[AudioStreamInfo, ...]
    subtitles: tuple[SubtitleStreamInfo, ...]
    # Seconds the first frame is presented after the file's start (its earliest stream):
    # how long the original audio plays before the picture (0.08 s in a file cut with its
    # audio 2 frames ahead). The output keeps it, so the Original track stays in step.
    picture_delay: Fraction = Fraction(0)

    @property
    def bit_depth(self) -> int:
        return self.layout.bit_depth

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the display rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    @property
    def frame_duration(self) -> Fraction:
        """Nominal seconds per frame."""
        return 1 / self.frame_rate

    def describe(self) -> str:
        """One line for logs and the CLI."""
        rate = float(self.frame_rate)
        vfr = " VFR" if self.is_vfr else ""
        rot = f" rotated {self.rotation}" if self.rotation else ""
        late = (f", the picture starts {float(self.picture_delay):.3f} s into the file"
                if self.picture_delay else "")
        return (f"{self.width}x{self.height} {self.codec} {self.pix_fmt} {rate:.3f} fps{vfr}{rot}, "
                f"{self.frame_count} frames, {float(self.duration):.3f} s, "
                f"{len(self.audio)} audio stream(s){late}")


def probe(path: str | os.PathLike, scan: bool = True) -> VideoInfo:
    """Describe the video file at ``path``.

    Args:
        path: the input file.
        scan: read every video packet (no decoding) for an exact frame count, duration and
            VFR flag, and to reject truncated files. Without it these come from the header.

    Raises:
        InputError: the file is missing, not readable media, has no video stream, or is
            truncated or corrupt.
    """
    path = Path(path)
    check_readable(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise InputError(f"{path} is not a video file FFmpeg can read ({_why(exc)})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        if container.format.name in _STILL_FORMATS or container.format.name.endswith("_pipe"):
            raise InputError(f"{path} is a still image, not a video")
        stream = container.streams.video[0]
        first = _first_frame(container, stream, path)
        layout = working_layout(first.format, stream.codec_context.width or first.width,
                                stream.codec_context.height or first.height)
        tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)
        rate = _nominal_rate(stream)
        audio = tuple(_audio_info(s, container) for s in container.streams.audio)
        subs = tuple(
            SubtitleStreamInfo(s.index, s.codec_context.name, s.metadata.get("language", ""))
            for s in container.streams.subtitles
        )
        color = _color_info(first, stream)
        header_frames = stream.frames
        declared, declared_is_end = _declared_duration(stream, tb)
        if not scan:
            timing = _header_timing(stream, tb, rate, container)
        fields = dict(
            path=path, container=container.format.name, size_bytes=path.stat().st_size,
            stream_index=stream.index, codec=stream.codec_context.name,
            width=layout.width, height=layout.height, pix_fmt=first.format.name, layout=layout,
            color=color, rotation=int(round(first.rotation or 0)) % 360,
            sample_aspect_ratio=_sar(stream), time_base=tb, frame_rate=rate, audio=audio,
            subtitles=subs,
        )
        file_start = container.start_time  # microseconds; None when no stream says
    if scan:
        timing = _scan_packets(path, fields["stream_index"], tb, rate, header_frames)
        read = timing[2]
        if declared_is_end:  # may be an end time, counted from 0 and not from the start
            read = max(read, timing[1] * tb + timing[2])
        if declared and read < declared - Fraction(3, 2) / rate:
            raise InputError(
                f"{path} is truncated or damaged: its header says the video lasts "
                f"{float(declared):.3f} s but only {float(timing[2]):.3f} s can be read")
    count, start, duration, vfr, last = timing
    if count == 0:
        raise InputError(f"{path} has a video stream with no frames")
    if last <= 0:  # the last two frames share a timestamp
        last = 1 / rate
    delay = Fraction(0)
    if file_start is not None:
        delay = max(start * tb - Fraction(file_start, av.time_base), Fraction(0))
    return VideoInfo(frame_count=count, start_pts=start, duration=duration,
                     last_frame_duration=last, is_vfr=vfr, scanned=scan,
                     picture_delay=delay, **fields)


def check_readable(path: Path) -> None:
    """InputError unless ``path`` is an existing, readable, non-empty file."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a media file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} is not readable (check its permissions)")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty")


def _why(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _first_frame(container: av.container.InputContainer, stream, path: Path) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"{path} is corrupt: its first video frame cannot be decoded "
                         f"({_why(exc)})") from None
    raise InputError(f"{path} has a video stream with no decodable frames")


_REF_SIDE = 64  # a frame side every chroma subsampling divides


def working_layout(fmt: av.VideoFormat, width: int, height: int) -> PixelLayout:
    """The planar YUV layout that frames of decoder format ``fmt`` are carried in:
    the same chroma subsampling and bit depth where the format is planar YUV already,
    4:4:4 for RGB, 4:2:0 for grey; alpha is dropped."""
    comps = fmt.components
    bits = max(c.bits for c in comps)
    depth = 8 if bits <= 8 else 10 if bits <= 10 else 12 if bits <= 12 else 16
    if fmt.is_rgb:
        chroma = "444"
    elif len(comps) < 3:
        chroma = "420"
    else:
        # The format's subsampling, read at a size every subsampling divides: at the
        # frame's own size an odd dimension hides it (4:2:0 at 321x241 has 161x121 chroma).
        ref = av.VideoFormat(fmt.name, _REF_SIDE, _REF_SIDE).components
        sx = _REF_SIDE // max(ref[1].width, 1)
        sy = _REF_SIDE // max(ref[1].height, 1)
        chroma = {(1, 1): "444", (2, 1): "422"}.get((sx, sy), "420")
    return PixelLayout(width, height, depth, chroma)


def _nominal_rate(stream) -> Fraction:
    for rate in (stream.base_rate, stream.average_rate, stream.guessed_rate):
        if rate and rate > 0:
            return Fraction(rate.numerator, rate.denominator)
    return Fraction(25)


def _sar(stream) -> Fraction:
    sar = stream.sample_aspect_ratio
    if sar is None or sar.numerator == 0:
        return Fraction(1)
    return Fraction(sar.numerator, sar.denominator)


def _color_info(frame: av.VideoFrame, stream) -> ColorInfo:
    cc = stream.codec_context
    rng = RANGES.get(int(frame.color_range or cc.color_range or 0), "unknown")
    if frame.format.name.startswith("yuvj"):
        rng = "pc"
    return ColorInfo(
        primaries=PRIMARIES.get(int(cc.color_primaries or 2), "unknown"),
        transfer=TRANSFERS.get(int(cc.color_trc or 2), "unknown"),
        matrix=MATRICES.get(int(frame.colorspace or cc.colorspace or 2), "unknown"),
        range=rng,
    )


def _audio_info(stream, container) -> AudioStreamInfo:
    cc = stream.codec_context
    if stream.duration:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    channels = cc.layout.nb_channels if cc.layout else getattr(cc, "channels", 0)
    return AudioStreamInfo(stream.index, cc.name, int(cc.sample_rate or 0), int(channels or 0),
                           duration, stream.metadata.get("language", ""))


def _demux_pts(path: Path, index: int, tb: Fraction) -> tuple[list[int], int, int]:
    """Demux (not decode) every packet of the video stream.

    Returns (the presented packets' pts in file order, the last packet's duration, the
    number of discarded packets)."""
    pts: list[int] = []
    last_duration = 0
    discarded = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = next(s for s in container.streams if s.index == index)
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_discard:
                    discarded += 1
                    continue
                if packet.is_corrupt:
                    raise InputError(f"{path} is corrupt: a damaged video packet at "
                                     f"{float((packet.pts or 0) * tb):.2f} s")
                pts.append(packet.pts if packet.pts is not None else packet.dts or 0)
                last_duration = packet.duration or last_duration
    except av.FFmpegError as exc:
        raise InputError(f"{path} is corrupt or truncated ({_why(exc)})") from None
    return pts, last_duration, discarded


def frame_times(info: VideoInfo) -> np.ndarray:
    """Every frame's presentation time in seconds from the first frame, in presentation
    order, from a packet scan (no decoding), shape = (info.frame_count,), float64."""
    pts, _, _ = _demux_pts(info.path, info.stream_index, info.time_base)
    t = (np.sort(np.asarray(pts, np.int64)) - info.start_pts) * float(info.time_base)
    if len(t) < info.frame_count:  # a header count past the scan: nominal spacing after it
        last = t[-1] if len(t) else -float(info.frame_duration)
        extra = last + np.arange(1, info.frame_count - len(t) + 1) * float(info.frame_duration)
        t = np.concatenate([t, extra])
    return t[: info.frame_count]


def _scan_packets(path: Path, index: int, tb: Fraction, rate: Fraction, header_frames: int
                  ) -> tuple[int, int, Fraction, bool, Fraction]:
    """Demux (not decode) every packet of the video stream.

    Returns (frame count, first pts, duration in seconds, variable frame rate, the last
    frame's duration in seconds: its packet's, else the interval before it)."""
    pts, last_duration, discarded = _demux_pts(path, index, tb)
    if header_frames and len(pts) + discarded < header_frames:
        raise InputError(
            f"{path} is truncated: its header lists {header_frames} video frames but only "
            f"{len(pts) + discarded} are in the file")
    if not pts:
        return 0, 0, Fraction(0), False, Fraction(0)
    pts.sort()
    nominal = 1 / (rate * tb)  # ticks per frame
    diffs = [b - a for a, b in zip(pts, pts[1:])]
    vfr = bool(diffs) and (max(diffs) - min(diffs) > 1)
    if not last_duration:
        last_duration = diffs[-1] if diffs else round(nominal)
    duration = (pts[-1] - pts[0] + last_duration) * tb
    return len(pts), pts[0], duration, vfr, last_duration * tb


def _declared_duration(stream, tb: Fraction) -> tuple[Fraction | None, bool]:
    """The video stream's duration as its header states it, or None; and whether that
    figure may be the stream's end time rather than its length.

    An mp4/mov stream duration is a length. The Matroska DURATION tag is the end time of
    the stream's last frame when FFmpeg wrote the file (a file whose timestamps start at
    10 s and run 2 s says 12 s) but the length when mkvmerge did: it may be either."""
    if stream.duration:
        return stream.duration * tb, False
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag and ":" in tag:
        try:
            h, m, sec = tag.split(":")
            return Fraction(int(h) * 3600 + int(m) * 60) + Fraction(sec), True
        except ValueError:
            return None, False
    return None, False


def _header_timing(stream, tb: Fraction, rate: Fraction, container
                   ) -> tuple[int, int, Fraction, bool, Fraction]:
    start = stream.start_time or 0
    if stream.duration:
        duration = stream.duration * tb
    elif container.duration:
        duration = Fraction(container.duration, av.time_base)
    else:
        duration = Fraction(0)
    count = stream.frames or round(duration * rate)
    return int(count), int(start), duration, False, 1 / rate
