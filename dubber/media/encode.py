"""Encoding and muxing through an ffmpeg subprocess, written atomically.

Frames go to ffmpeg as raw video inside a NUT stream on a pipe: NUT carries every frame's
own timestamp, so variable-rate video and odd time bases come out with exactly the input's
timestamps (``-fps_mode passthrough``, the input's time base kept). ffmpeg encodes (x264
by default; x265, ProRes 422 HQ or FFV1), writes the input's colour description and display
rotation, and muxes:

- audio stream 0: the dub track, padded with silence or cut to the picture's duration;
- audio stream 1 (optional): the input's original audio, copied, labelled "Original";
- the input's subtitle streams, copied (text subtitles become mov_text in mp4).

Everything is written to a hidden temporary file beside the destination, renamed over it
only when ffmpeg has finished cleanly; on any failure or interruption it is deleted.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

from dubber.chunk import Chunk
from dubber.config import EncodeConfig
from dubber.errors import RunError, UsageError
from dubber.files import temp_beside
from dubber.languages import language_problem
from dubber.media.ffmpeg import ffmpeg_exe
from dubber.media.frames import PixelLayout
from dubber.media.probe import VideoInfo

log = logging.getLogger(__name__)

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_SUFFIX = {"x264": ".mp4", "x265": ".mp4", "prores": ".mov", "ffv1": ".mkv"}
_CODEC_CONTAINERS = {"x264": {"mp4", "mov", "matroska"}, "x265": {"mp4", "mov", "matroska"},
                     "prores": {"mov", "matroska"}, "ffv1": {"matroska", "mov"}}
_X264_FORMATS = {f"yuv{c}p{d}" for c in ("420", "422", "444") for d in ("", "10le")}
_X265_FORMATS = {f"yuv{c}p{d}" for c in ("420", "422", "444") for d in ("", "10le", "12le")}
# Audio codecs each container takes as a stream copy (the original track is copied).
_COPYABLE = {"mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
             "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le",
                     "pcm_s32le", "pcm_f32le", "pcm_s16be", "pcm_s24be"},
             "matroska": None}  # None: anything
_DEFAULT_AUDIO = {"mp4": "aac", "mov": "pcm_s24le", "matroska": "flac"}
_TEXT_SUBS = {"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"}


def container_for(path: Path) -> str:
    """FFmpeg muxer name for an output path, by its extension."""
    fmt = CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot write {path.name}: use an .mp4, .mov or .mkv output name")
    return fmt


def check_container(cfg: EncodeConfig, output: Path) -> str:
    """The container of ``output`` if it can hold ``cfg``'s video codec and dub language
    tag; raises UsageError."""
    container = container_for(output)
    if container not in _CODEC_CONTAINERS[cfg.codec]:
        good = ", ".join(sorted(s for s, c in CONTAINERS.items()
                                if c in _CODEC_CONTAINERS[cfg.codec]))
        raise UsageError(f"{cfg.codec} video cannot go in {output.suffix}: use {good}")
    problem = language_problem(cfg.dub_language, container)
    if problem:
        raise UsageError(f"--dub-language {problem}")
    return container


def output_pix_fmt(layout: PixelLayout, codec: str) -> str:
    """The encoded pixel format: the input's own where the codec can carry it."""
    fmt = layout.pix_fmt
    if codec == "prores":
        return "yuv422p10le"  # ProRes 422 HQ is always 10-bit 4:2:2
    if codec == "ffv1":
        return fmt
    allowed = _X264_FORMATS if codec == "x264" else _X265_FORMATS
    if fmt not in allowed:
        alt = "x265 or ffv1" if codec == "x264" else "ffv1"
        raise UsageError(f"{codec} cannot keep this video's format {fmt}: choose --codec {alt}")
    sx, sy = layout.chroma_shift
    if (layout.width % (1 << sx)) or (layout.height % (1 << sy)):
        # H.264 and HEVC code subsampled chroma only at even sizes (and cannot crop a
        # single pixel off): keep the size, every pixel, at full chroma resolution.
        full = fmt.replace(f"yuv{layout.chroma}p", "yuv444p")
        log.warning("%s cannot encode %s at the odd size %dx%d: writing %s (not every player "
                    "plays it); --codec ffv1 or prores keeps the size in 4:2:x",
                    codec, fmt, layout.width, layout.height, full)
        return full
    return fmt


@dataclass(frozen=True)
class MuxPlan:
    """Everything that decides the ffmpeg command, computed before any frame is decoded."""

    info: VideoInfo
    dub_path: Path
    dub_stream: int  # stream index of the dub audio inside dub_path
    output: Path
    cfg: EncodeConfig
    container: str
    pix_fmt: str

    @classmethod
    def make(cls, info: VideoInfo, dub_path: Path, dub_stream: int, output: Path,
             cfg: EncodeConfig) -> "MuxPlan":
        container = check_container(cfg, output)
        if cfg.keep_original_audio and not info.audio:
            log.warning("%s has no audio: --keep-original-audio adds no Original track",
                        info.path.name)
        return cls(info, dub_path, dub_stream, output, cfg, container,
                   output_pix_fmt(info.layout, cfg.codec))

    def command(self, tmp_path: Path, copy_video: bool = False) -> list[str]:
        """The ffmpeg command writing ``tmp_path``. Input 0 is a NUT stream on stdin: raw
        frames to encode, or with ``copy_video`` frames already encoded (the joined segments
        of :mod:`dubber.segments`), copied as they are."""
        info = self.info
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        # Input 0: the frames, NUT on stdin. Rotation is re-attached as metadata, never
        # applied to the pixels.
        cmd += ["-noautorotate", "-display_rotation", str(info.rotation)]
        # The picture and the dub (whose sample 0 plays with the first frame) start as late
        # after the file's start as the input's picture did: the Original track and the
        # subtitles, copied with their own times, stay in step with both.
        delay = info.picture_delay
        late = ["-itsoffset", f"{float(delay):.6f}"] if delay > 0 else []
        cmd += late + ["-thread_queue_size", "4", "-f", "nut", "-i", "pipe:0"]
        cmd += late + ["-i", str(self.dub_path)]  # input 1: the dub
        keep = self._original_audio()
        subs = self._subtitles()
        if keep is not None or subs:
            cmd += ["-i", str(info.path)]  # input 2: the original, for audio and subtitles
        cmd += ["-map", "0:v:0", "-map", f"1:{self.dub_stream}"]
        if keep is not None:
            cmd += ["-map", f"2:{keep.index}"]
        for s in subs:
            cmd += ["-map", f"2:{s.index}"]
        cmd += self._copy_args() if copy_video else self._video_args()
        cmd += ["-bsf:v", self._last_frame_duration()]
        cmd += self._audio_args(keep)
        if subs:
            cmd += ["-c:s", "mov_text" if self.container == "mp4" else "copy"]
        cmd += ["-map_metadata", "-1", "-map_chapters", "-1"]
        cmd += ["-f", self.container, str(tmp_path)]
        return cmd

    def segment_command(self, tmp_path: Path, threads: int) -> list[str]:
        """The ffmpeg command encoding one segment of the picture (raw NUT frames on stdin)
        to ``tmp_path``: video only, NUT (every timestamp kept exactly), the encoder's
        threads pinned to ``threads`` so that the same frames give the same bytes."""
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-copyts", "-thread_queue_size", "4", "-f", "nut", "-i", "pipe:0",
               "-map", "0:v:0", "-avoid_negative_ts", "disabled"]
        cmd += self._video_args(container="nut") + ["-threads", str(threads)]
        if self.cfg.codec == "x265":
            cmd[cmd.index("log-level=error")] = f"log-level=error:pools={threads}"
        cmd += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]
        return cmd + ["-f", "nut", str(tmp_path)]

    def _last_frame_duration(self) -> str:
        """A bitstream filter giving the last frame the input's last frame duration.

        NUT, which carries the frames to the final ffmpeg, stores no packet durations, so
        ffmpeg makes each one up from the stream's frame rate: for variable-rate video
        (whose NUT stream declares no usable rate) one tick of NUT's time base, and for the
        joined segments of a one-frame video nothing at all. Rounded into the output's time
        base that is 0. mp4/mov take each sample's duration from the next decode timestamp,
        except the last sample's, which is its packet's, and end the edit list at the
        largest pts plus its packet's duration: with 0 players drop the last frame (with
        one frame, the whole picture); Matroska's duration stops short too.

        So the last frame shown (the one ``duration - last_frame_duration`` after the first,
        STARTPTS being the first packet's, a keyframe shown first) and the last packet in
        decode order get ``last_frame_duration``; every other packet is left as it is. The
        video then ends exactly where the input's does, where the dub track is cut or
        padded, and a probe of the output reads the input's duration."""
        info = self.info
        span = info.duration - info.last_frame_duration  # first frame to the last's start
        # Half a tick of the input's time base below the last frame: no other frame is
        # that late, whatever time base ffmpeg carries the packets in.
        last_from = max(span - info.time_base / 2, Fraction(0))
        d = info.last_frame_duration
        last = (f"gte((PTS-STARTPTS)*TB,{last_from.numerator}/{last_from.denominator})"
                "+eq(NEXT_PTS,NOPTS)")
        expr = f"if({last},{d.numerator}/{d.denominator}/TB,DURATION)"
        return f"setts=pts=PTS:dts=DTS:duration='{expr}'"

    def _copy_args(self) -> list[str]:
        # bitexact: no random Matroska segment id, so the same segments give the same file.
        args = ["-c:v", "copy", "-fflags", "+bitexact"] + self._color_args()
        if self.cfg.codec == "x265":
            args += ["-tag:v", "hvc1"]
        if self.container in ("mp4", "mov"):
            args += ["-video_track_timescale", str(self.info.time_base.denominator)]
        return args

    def _color_args(self) -> list[str]:
        args = []
        c = self.info.color
        for opt, value in (("-color_primaries", c.primaries), ("-color_trc", c.transfer),
                           ("-colorspace", c.matrix), ("-color_range", c.range)):
            if value != "unknown":
                args += [opt, value]
        return args

    def _video_args(self, container: str | None = None) -> list[str]:
        info, cfg = self.info, self.cfg
        container = container or self.container
        args = ["-fps_mode", "passthrough", "-enc_time_base", "demux", "-pix_fmt", self.pix_fmt]
        if cfg.codec == "x264":
            args += ["-c:v", "libx264", "-preset", cfg.speed, "-crf", str(cfg.crf)]
        elif cfg.codec == "x265":
            args += ["-c:v", "libx265", "-preset", cfg.speed, "-crf", str(cfg.crf),
                     "-x265-params", "log-level=error"]
            if container in ("mp4", "mov"):
                args += ["-tag:v", "hvc1"]
        elif cfg.codec == "prores":
            args += ["-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0"]
        else:
            args += ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1"]
        args += self._color_args()
        if container in ("mp4", "mov"):
            args += ["-video_track_timescale", str(info.time_base.denominator)]
        return args

    def _audio_args(self, keep) -> list[str]:
        d = f"{float(self.info.duration):.6f}"
        codec = self.cfg.audio_codec or _DEFAULT_AUDIO[self.container]
        args = ["-filter:a:0", f"apad=whole_dur={d},atrim=duration={d}", "-c:a:0", codec]
        if codec in ("aac", "libmp3lame", "libopus", "ac3", "eac3"):
            args += ["-b:a:0", self.cfg.audio_bitrate]
        # mp4/mov label a track by its handler name, Matroska by its title: write both.
        args += ["-disposition:a:0", "default", "-metadata:s:a:0", "title=Dub",
                 "-metadata:s:a:0", "handler_name=Dub"]
        if self.cfg.dub_language:
            args += ["-metadata:s:a:0", f"language={self.cfg.dub_language}"]
        if keep is not None:
            copyable = _COPYABLE[self.container]
            if copyable is None or keep.codec in copyable:
                args += ["-c:a:1", "copy"]
            else:
                args += ["-c:a:1", codec]
            args += ["-disposition:a:1", "0", "-metadata:s:a:1", "title=Original",
                     "-metadata:s:a:1", "handler_name=Original"]
            if keep.language:
                args += ["-metadata:s:a:1", f"language={keep.language}"]
        return args

    def _original_audio(self):
        if self.cfg.keep_original_audio and self.info.audio:
            return self.info.audio[0]
        return None

    def _subtitles(self):
        subs = []
        for s in self.info.subtitles:
            if self.container == "mp4" and s.codec not in _TEXT_SUBS:
                log.warning("subtitle stream %d (%s) cannot go in mp4 and is left out; "
                            "use .mkv to keep it", s.index, s.codec)
                continue
            subs.append(s)
        return subs


def die_with_parent() -> None:
    """In a child process before exec: be killed when the parent dies (Linux; elsewhere a
    no-op). Lets nothing outlive a ``kill -9`` of dubber."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def temp_path_for(output: Path) -> Path:
    """A hidden file beside ``output`` on the same filesystem, so the rename is atomic."""
    return temp_beside(output, f".part{output.suffix}")


_POLL_SECONDS = 0.05  # how often a waiting encoder thread looks for abort()


class _Stopped(Exception):
    """Raised in the encoder thread when :meth:`VideoWriter.abort` asks it to stop."""


class VideoWriter:
    """Feeds chunks to ffmpeg from a background thread; :meth:`finish` publishes the file.

    Usage::

        with VideoWriter(plan) as writer:   # aborts (deletes the temp file) on exception
            for chunk in chunks:
                writer.write(chunk)
            writer.finish()
    """

    def __init__(self, plan: MuxPlan, output: Path | None = None,
                 command: Callable[[Path], list[str]] | None = None) -> None:
        # ``output`` and ``command`` replace the plan's (a segment of a resumable render).
        self.plan = plan
        self.output = output or plan.output
        self._command = command or plan.command
        self.tmp = temp_path_for(self.output)
        self._log = tempfile.TemporaryFile(mode="w+b")
        # A hand-off, not a buffer: write() returns once the encoder thread has taken the
        # chunk, so the only chunks alive on this side are the one being written and the
        # one the caller works on (decoded frames are the bulk of dubber's memory at 4K).
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._taken = threading.Semaphore(0)
        # Set by abort(): the encoder thread stops waiting for chunks and exits, so abort()
        # always returns, whether the thread was idle, feeding ffmpeg or not yet started.
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._done = False

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()

    def start(self) -> None:
        cmd = self._command(self.tmp)
        log.debug("ffmpeg: %s", " ".join(cmd))
        # A session of its own: a Ctrl-C in the terminal reaches us, not ffmpeg, so ffmpeg
        # never "finishes" a partial file on its own; we stop it.
        # ffmpeg also dies with us: a run killed with SIGKILL leaves no encoder behind.
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log, start_new_session=True,
                                      preexec_fn=die_with_parent)
        self._thread = threading.Thread(target=self._run, name="dubber-encode", daemon=True)
        self._thread.start()

    def write(self, chunk: Chunk | None) -> None:
        """Hand a chunk to the encoder thread; returns once it has taken it (None ends)."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(chunk, timeout=0.1)
                break
            except queue.Full:
                continue
        while not self._taken.acquire(timeout=0.1):
            self._raise_if_failed()

    def finish(self) -> Path:
        """Flush, wait for ffmpeg, and rename the temporary file over the output."""
        self.write(None)
        self._thread.join()
        self._raise_if_failed()
        rc = self._proc.wait()
        if rc != 0:
            message = self._ffmpeg_message()
            self.abort()
            raise RunError(f"ffmpeg failed while writing {self.plan.output.name}: {message}")
        os.replace(self.tmp, self.output)
        self._done = True
        self._log.close()
        return self.output

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file. Safe to call more than once."""
        self._done = True
        self._stop.set()  # an idle encoder thread sees it within _POLL_SECONDS and exits
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
        # ffmpeg is gone: a thread writing to it gets a broken pipe, one waiting for a chunk
        # sees the stop event; either way it ends.
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        while True:  # drop a chunk handed over but never taken (its frames' memory)
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
        if not self._log.closed:
            self._log.close()

    # -- internals -------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        if self._error is not None:
            err = self._error
            if isinstance(err, (BrokenPipeError, av.FFmpegError, OSError)) and not isinstance(
                    err, RunError):
                self._proc.wait()
                err = RunError(f"ffmpeg stopped while writing {self.plan.output.name}: "
                               f"{self._ffmpeg_message()}")
            self.abort()
            raise err

    def _ffmpeg_message(self) -> str:
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode("utf-8", "replace").splitlines()
                 if ln.strip()]
        if not lines:
            return f"exit code {self._proc.returncode}"
        return lines[-1]

    def _run(self) -> None:
        try:
            self._feed()
        except _Stopped:
            pass
        except BaseException as exc:
            self._error = exc

    def _take(self) -> Chunk | None:
        """The next chunk handed over by :meth:`write` (None: the end), in the encoder
        thread; raises :class:`_Stopped` once :meth:`abort` has been called."""
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                chunk = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            self._taken.release()
            if self._stop.is_set():
                raise _Stopped
            return chunk

    def _feed(self) -> None:
        info = self.plan.info
        layout = info.layout
        fd = self._proc.stdin.fileno()
        out = av.open(f"pipe:{fd}", "w", format="nut")
        try:
            stream = out.add_stream("rawvideo", rate=info.frame_rate)
            stream.width, stream.height = layout.width, layout.height
            stream.pix_fmt = layout.pix_fmt
            tb = Fraction(info.time_base)
            stream.time_base = tb
            stream.codec_context.time_base = tb
            if info.sample_aspect_ratio != 1:
                stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
            while True:
                chunk = self._take()
                if chunk is None:
                    break
                for i, frame in enumerate(chunk.frames.frames):
                    if self._stop.is_set():
                        raise _Stopped
                    frame.pts = int(chunk.pts[i])
                    frame.time_base = tb
                    out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        finally:
            try:
                out.close()
            finally:
                self._proc.stdin.close()
