"""Audio for the models: loading, the log-mel spectrogram, and the frame -> mel timeline.

The models hear 16 kHz mono. A dub track of any length is decoded once, resampled by
FFmpeg's swresample, into a float32 file on disk (:class:`AudioTrack`); chunks then read
only the samples around their own frames, so memory does not grow with the film.

Timeline: the dub's sample 0 plays with the video's first frame; a film's own sound is read
from the sample that plays with its first frame (``from_picture``). Mel step ``k`` is centred
on ``k * HOP_LENGTH`` samples, i.e. ``k / MEL_STEPS_PER_SECOND`` seconds. A frame shown at
time ``t`` (exact, from its pts) gets the window of ``steps`` mel steps whose middle step
(index ``steps // 2``) is ``round(t * MEL_STEPS_PER_SECOND)``. Because ``t`` comes from the
frame's own timestamp, 23.976, 29.97 and variable-rate video stay in sync over a whole film.
Outside the dub track the signal is silence (zeros), so windows at the ends are padded with
the log-mel of silence and mouths close.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from dubber.errors import InputError
from dubber.media.probe import check_readable

if TYPE_CHECKING:  # torch is imported where the mel is computed, not at start-up
    import torch

SAMPLE_RATE = 16000  # Hz, what every model hears
N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms between mel steps
N_MELS = 80
LOG_FLOOR = 1e-5  # mel power floor before log10; silence maps to log10(LOG_FLOOR)


def _exact_div(a: int, b: int) -> int:
    assert a % b == 0, (a, b)
    return a // b


MEL_STEPS_PER_SECOND = _exact_div(SAMPLE_RATE, HOP_LENGTH)  # 100
SILENCE_LOG_MEL = float(np.log10(LOG_FLOOR))  # -5.0, the value of every bin in silence
GENERATOR_WINDOW_STEPS = _exact_div(200 * MEL_STEPS_PER_SECOND, 1000)  # 200 ms -> 20 steps
EXPERT_WINDOW_STEPS = MEL_STEPS_PER_SECOND  # 1 s -> 100 steps


@dataclass(frozen=True)
class AudioFileInfo:
    """What the length policy and the muxer need to know about a dub track."""

    path: Path
    stream_index: int
    codec: str
    sample_rate: int
    channels: int
    duration: float  # seconds, from the decoded samples


def _open_audio(path: Path, stream_index: int | None):
    check_readable(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise InputError(f"{path} is not an audio file FFmpeg can read "
                         f"({str(exc).splitlines()[0]})") from None
    streams = container.streams.audio
    if not streams:
        container.close()
        raise InputError(f"{path} has no audio stream")
    if stream_index is None:
        stream = streams[0]
    else:
        matches = [s for s in streams if s.index == stream_index]
        if not matches:
            container.close()
            raise InputError(f"{path} has no audio stream with index {stream_index}")
        stream = matches[0]
    return container, stream


def picture_lead(path: str | os.PathLike, stream_index: int | None = None) -> float:
    """Seconds of a video file's own sound that play before its first frame: the first
    frame's presentation time less the sound's first sample's (negative when the sound
    starts after the picture; 0 for a file without a picture, or whose first frames cannot
    be decoded). A cut made with the sound ahead, an edit list, a broadcast capture: the
    streams of one file need not start together."""
    times = []
    try:
        for kind in ("video", "audio"):
            # a fresh demuxer for each: a seek back would land on the picture's first
            # packet, past the sound interleaved before it
            with av.open(str(path), metadata_errors="ignore") as c:
                if not c.streams.video or not c.streams.audio:
                    return 0.0
                stream = c.streams.video[0] if kind == "video" else next(
                    (s for s in c.streams.audio if s.index == stream_index), c.streams.audio[0])
                frame = next((f for f in itertools.islice(c.decode(stream), 64)
                              if f.pts is not None), None)
                if frame is None:
                    return 0.0
                times.append(float(frame.pts * stream.time_base))
    except av.FFmpegError:
        return 0.0
    return times[0] - times[1]


def _resampled_blocks(path: Path, stream_index: int | None, sample_rate: int,
                      lead: float = 0.0):
    """Yield float32 mono blocks at ``sample_rate``; the first item is the stream's
    (index, codec, sample rate, channels). ``lead`` seconds are dropped from the start
    (negative: that much silence is put before it)."""
    container, stream = _open_audio(path, stream_index)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    skip = round(lead * sample_rate)
    with container:
        cc = stream.codec_context
        channels = cc.layout.nb_channels if cc.layout else 0
        yield stream.index, cc.name, int(cc.sample_rate or 0), int(channels)
        if skip < 0:
            yield np.zeros(-skip, np.float32)
        heard, given = 0, 0  # samples decoded, samples yielded

        def kept(block: np.ndarray) -> np.ndarray:
            nonlocal skip
            if skip > 0:
                cut = min(skip, block.size)
                skip -= cut
                block = block[cut:]
            return block

        try:
            for frame in container.decode(stream):
                heard += frame.samples
                frame.pts = None  # let swresample keep its own continuous timeline
                for out in resampler.resample(frame):
                    given += out.samples
                    yield kept(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                given += out.samples
                yield kept(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise InputError(f"{path} is corrupt: audio decoding failed "
                             f"({str(exc).splitlines()[0]})") from None
        if heard and not given:
            # a few samples (1 ms at 48 kHz) never leave the resampler's filter: the sound
            # is too short to hear, its length is kept as silence
            rate = int(cc.sample_rate or sample_rate)
            yield np.zeros(max(1, round(heard * sample_rate / rate)), np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               stream_index: int | None = None, from_picture: bool = False) -> np.ndarray:
    """Decode an audio (or video) file's audio to mono float32.

    Args:
        path: wav, flac, mp3, m4a, or a video with an audio stream.
        sample_rate: output rate in Hz.
        stream_index: container stream index; None = the first audio stream.
        from_picture: sample 0 is the one that plays with the file's own first frame
            (:func:`picture_lead`), as for a film's original sound; else the stream's
            first sample, as for a dub, whose sample 0 plays with the dubbed picture's
            first frame.

    Returns:
        shape = (n_samples,), float32, nominally in [-1, 1].

    Raises:
        InputError: missing, unreadable, no audio stream, corrupt, or no samples.
    """
    path = Path(path)
    lead = picture_lead(path, stream_index) if from_picture else 0.0
    blocks = _resampled_blocks(path, stream_index, sample_rate, lead)
    next(blocks)
    samples = np.concatenate([b for b in blocks] or [np.zeros(0, np.float32)])
    if samples.size == 0:
        raise InputError(f"{path} has an audio stream with no samples")
    return samples.astype(np.float32, copy=False)


class AudioTrack:
    """A dub track decoded once to 16 kHz mono float32 in a temporary file, read by time.

    Memory use is independent of the track's length: :meth:`samples` maps only the range
    asked for. Use as a context manager (or call :meth:`close`) to delete the file.
    ``from_picture``: as :func:`load_audio`'s (a film's own sound, read as it plays with
    the film's picture).
    """

    def __init__(self, path: str | os.PathLike, stream_index: int | None = None,
                 sample_rate: int = SAMPLE_RATE, tmp_dir: str | None = None,
                 from_picture: bool = False) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        lead = picture_lead(self.path, stream_index) if from_picture else 0.0
        fd, self._file = tempfile.mkstemp(prefix="dubber-audio-", suffix=".f32", dir=tmp_dir)
        n = 0
        try:
            with os.fdopen(fd, "wb") as out:
                blocks = _resampled_blocks(self.path, stream_index, sample_rate, lead)
                index, codec, rate, channels = next(blocks)
                for block in blocks:
                    out.write(np.ascontiguousarray(block, np.float32).tobytes())
                    n += block.size
            if n == 0:
                raise InputError(f"{self.path} has an audio stream with no samples")
        except BaseException:
            os.unlink(self._file)
            raise
        self.n_samples = n
        self.info = AudioFileInfo(self.path, index, codec, rate, channels, n / sample_rate)
        self._data = np.memmap(self._file, np.float32, "r", shape=(n,))

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start`` .. ``stop`` (may lie outside the track: zeros there).

        Returns: shape = (stop - start,), float32."""
        out = np.zeros(max(stop - start, 0), np.float32)
        a, b = max(start, 0), min(stop, self.n_samples)
        if b > a:
            out[a - start: b - start] = self._data[a:b]
        return out

    def close(self) -> None:
        if self._data is not None:
            self._data._mmap.close()  # release the mapping before unlinking
            self._data = None
            os.unlink(self._file)

    def __enter__(self) -> "AudioTrack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                fmin: float = 0.0, fmax: float | None = None) -> "torch.Tensor":
    """Slaney-style triangular mel filterbank (area-normalised), as librosa computes it.

    Returns: shape = (n_mels, n_fft // 2 + 1), float32."""
    import torch

    fmax = fmax if fmax is not None else sample_rate / 2

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        lin = m * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log_part, lin)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2:] - mel_pts[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def log_mel(samples: np.ndarray | "torch.Tensor", center: bool = True) -> "torch.Tensor":
    """Log10 mel power spectrogram.

    Args:
        samples: shape = (n,), float32 16 kHz mono.
        center: zero-pad ``N_FFT // 2`` on both sides so that step ``k`` is centred on
            sample ``k * HOP_LENGTH`` (zeros = silence, consistent with the timeline).

    Returns:
        shape = (N_MELS, n // HOP_LENGTH + 1) with center, float32; silence is
        ``SILENCE_LOG_MEL``.
    """
    import torch

    x = torch.as_tensor(samples, dtype=torch.float32)
    if center:
        x = torch.nn.functional.pad(x, (N_FFT // 2, N_FFT // 2))
    if x.numel() < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - x.numel()))
    spec = torch.stft(x, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), center=False,
                      return_complex=True)
    power = spec.abs() ** 2
    mel = mel_filters() @ power
    return torch.log10(torch.clamp(mel, min=LOG_FLOOR))


def centre_step(t: Fraction | float) -> int:
    """The mel step centred nearest to time ``t`` seconds (exact for Fractions)."""
    return int(round(Fraction(t) * MEL_STEPS_PER_SECOND))


def read_range(track: AudioTrack | np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples ``start .. stop - 1`` of an :class:`AudioTrack` (or anything with
    ``samples(start, stop)``) or of a 16 kHz array; zeros outside the track.

    Returns: shape = (stop - start,), float32."""
    if hasattr(track, "samples"):
        return track.samples(start, stop)
    audio = np.zeros(stop - start, np.float32)
    a, b = max(start, 0), min(stop, len(track))
    if b > a:
        audio[a - start: b - start] = track[a:b]
    return audio


def mel_windows(track: AudioTrack | np.ndarray, times, steps: int = GENERATOR_WINDOW_STEPS
                ) -> "torch.Tensor":
    """The mel window of every frame, each centred on its frame's presentation time.

    Computes the spectrogram only over the steps these frames need (with the real
    neighbouring samples as context), so chunks of a long film cost what they use and the
    result equals slicing a spectrogram of the whole track.

    Args:
        track: the dub as an :class:`AudioTrack`, or a whole 16 kHz mono array.
        times: presentation times in seconds relative to the first frame, shape = (N,);
            Fractions (exact) or floats.
        steps: window length in mel steps (20 for the generator, 100 for the expert).

    Returns:
        shape = (N, N_MELS, steps), float32.
    """
    import torch

    centres = [centre_step(t) for t in times]
    if not centres:
        return torch.empty(0, N_MELS, steps)
    first = min(centres) - steps // 2
    last = max(centres) - steps // 2 + steps  # exclusive
    start = first * HOP_LENGTH - N_FFT // 2
    stop = (last - 1) * HOP_LENGTH + N_FFT // 2
    audio = read_range(track, start, stop)
    mel = log_mel(audio, center=False)  # step j here is global step first + j
    idx = torch.tensor([c - steps // 2 - first for c in centres])[:, None] + torch.arange(steps)
    return mel[:, idx].permute(1, 0, 2).contiguous()
